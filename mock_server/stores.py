"""Opening the store a `--db` value names: a SQLite file, `:memory:`, or a PostgreSQL URL."""

from __future__ import annotations

from vpp_sandbox.mock_server.autopilot import next_due
from vpp_sandbox.mock_server.documents import encode_checked
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.store import Store

__all__ = ["is_postgres", "open_store"]


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def open_store(db: str, settings: Settings | None = None) -> Store:
    """The store for `db`, wired to the autopilot's due-time rule and the checked encoder, and
    bounded by the settings' store timeout (and WAL size, on SQLite)."""
    settings = settings or Settings()
    if is_postgres(db):
        from vpp_sandbox.mock_server.store_postgres import PostgresStore

        return PostgresStore(
            db, next_due=next_due, encode=encode_checked, timeout=settings.store_timeout
        )
    from vpp_sandbox.mock_server.store_sqlite import SqliteStore

    return SqliteStore(
        db,
        next_due=next_due,
        encode=encode_checked,
        timeout=settings.store_timeout,
        wal_bytes=settings.wal_bytes,
    )

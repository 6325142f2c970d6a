"""The participations store over SQLite (a file by default, `:memory:` for tests), injected.

Every method runs in one transaction under one lock, so the store is safe from threads too; an
update is a read-modify-write guarded by a version column (compare-and-swap), so concurrent
updates of one participation are applied one on top of the other and never lose a write, even
across processes sharing the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mock_server.clock import Namespace
from mock_server.lifecycle import TERMINAL, Participation, format_time

__all__ = [
    "DuplicateParticipation",
    "Page",
    "ParticipationNotFound",
    "Store",
    "StoreError",
    "UnknownCursor",
]


class StoreError(Exception):
    """A request the store refuses; `code` names it in the error catalogue."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ParticipationNotFound(StoreError):
    code = "participation_not_found"

    def __init__(self, namespace: Namespace, participation_id: str) -> None:
        mode = "live" if namespace.live_mode else "test"
        super().__init__(
            f"No VPP participation {participation_id} in this account's {mode} mode. Check the "
            "id, and that the token's mode matches the one the participation was created in."
        )


class DuplicateParticipation(StoreError):
    code = "participation_exists"

    def __init__(self, existing: Participation) -> None:
        self.existing_id = existing.id
        super().__init__(
            f"Device {existing.device_id} already takes part in programme "
            f"{existing.programme.id} with {existing.id} ({existing.current_state.value}). "
            f"Update or retrieve {existing.id}; a new participation can be created once it is "
            "INELIGIBLE, OFFBOARDED or FAILED."
        )


class UnknownCursor(StoreError):
    code = "invalid_parameter"

    def __init__(self, name: str, participation_id: str) -> None:
        super().__init__(
            f"{name}={participation_id} is not a participation of this account and mode. Use "
            "the id of the first (ending_before) or last (starting_after) item of a page you "
            "received."
        )


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Participation]
    has_more: bool


_SCHEMA = """
CREATE TABLE IF NOT EXISTS participations (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL,
    live_mode     INTEGER NOT NULL,
    device_id     TEXT NOT NULL,
    programme_id  TEXT NOT NULL,
    current_state TEXT NOT NULL,
    terminal      INTEGER NOT NULL,
    time_created  TEXT NOT NULL,
    scenario      TEXT NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS participations_list
    ON participations (account_id, live_mode, time_created DESC, id DESC);
CREATE INDEX IF NOT EXISTS participations_device
    ON participations (account_id, live_mode, device_id, time_created DESC, id DESC);
CREATE INDEX IF NOT EXISTS participations_open
    ON participations (account_id, live_mode, device_id, programme_id, terminal);
"""

_COLUMNS = "body, scenario"


def _row_to_participation(row: sqlite3.Row | tuple[Any, ...]) -> Participation:
    return Participation.from_json(json.loads(row[0]), scenario=row[1])


class Store:
    """Participations keyed by id, each in its (account, live_mode) namespace."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- writes --------------------------------------------------------------------------------

    def insert(self, participation: Participation) -> None:
        """Add a new participation; a duplicate open one for the device and programme is refused."""
        p = participation
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM participations WHERE account_id=? AND live_mode=? "
                "AND device_id=? AND programme_id=? AND terminal=0 LIMIT 1",
                (p.account_id, int(p.live_mode), p.device_id, p.programme.id),
            ).fetchone()
            if row is not None and p.current_state not in TERMINAL:
                raise DuplicateParticipation(_row_to_participation(row))
            self._write(db, p, version=1)

    def update(
        self,
        namespace: Namespace,
        participation_id: str,
        change: Callable[[Participation], Participation],
    ) -> Participation:
        """Apply `change` to the stored participation atomically and store its result.

        `change` may raise: nothing is written then. The version check makes the write fail
        rather than overwrite a version that another writer stored in between.
        """
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_COLUMNS}, version FROM participations "
                "WHERE id=? AND account_id=? AND live_mode=?",
                (participation_id, namespace.account_id, int(namespace.live_mode)),
            ).fetchone()
            if row is None:
                raise ParticipationNotFound(namespace, participation_id)
            current = _row_to_participation(row)
            updated = change(current)
            if updated is current or updated == current:
                return current
            cursor = db.execute(
                "UPDATE participations SET current_state=?, terminal=?, scenario=?, body=?, "
                "version=version+1 WHERE id=? AND version=?",
                (
                    updated.current_state.value,
                    int(updated.current_state in TERMINAL),
                    updated.scenario,
                    json.dumps(updated.to_json()),
                    participation_id,
                    row[2],
                ),
            )
            if cursor.rowcount != 1:  # pragma: no cover - only with another process writing
                raise RuntimeError(f"{participation_id} changed during the update")
            return updated

    def load(self, participations: Iterable[Participation]) -> int:
        """Insert or replace participations as they are (a world, a fixture); returns the count."""
        count = 0
        with self._transaction() as db:
            for p in participations:
                self._write(db, p, version=1, replace=True)
                count += 1
        return count

    def reset(self) -> None:
        """Forget every participation."""
        with self._transaction() as db:
            db.execute("DELETE FROM participations")

    @staticmethod
    def _write(
        db: sqlite3.Connection, p: Participation, *, version: int, replace: bool = False
    ) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        db.execute(
            f"{verb} INTO participations (id, account_id, live_mode, device_id, programme_id, "
            "current_state, terminal, time_created, scenario, version, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                p.id,
                p.account_id,
                int(p.live_mode),
                p.device_id,
                p.programme.id,
                p.current_state.value,
                int(p.current_state in TERMINAL),
                format_time(p.time_created),
                p.scenario,
                version,
                json.dumps(p.to_json()),
            ),
        )

    # -- reads ---------------------------------------------------------------------------------

    def get(self, namespace: Namespace, participation_id: str) -> Participation:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM participations WHERE id=? AND account_id=? "
                "AND live_mode=?",
                (participation_id, namespace.account_id, int(namespace.live_mode)),
            ).fetchone()
        if row is None:
            raise ParticipationNotFound(namespace, participation_id)
        return _row_to_participation(row)

    def all(self) -> list[Participation]:
        """Every participation of every namespace, oldest first (for worlds and autopilots)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM participations ORDER BY time_created, id"
            ).fetchall()
        return [_row_to_participation(r) for r in rows]

    def list(
        self,
        namespace: Namespace,
        *,
        limit: int = 30,
        starting_after: str | None = None,
        ending_before: str | None = None,
        device_id: str | None = None,
    ) -> Page:
        """A page newest first by (time_created, id); keyset cursors keep it stable."""
        if starting_after is not None and ending_before is not None:
            raise ValueError("starting_after and ending_before are exclusive")
        where = ["account_id=?", "live_mode=?"]
        args: list[Any] = [namespace.account_id, int(namespace.live_mode)]
        if device_id is not None:
            where.append("device_id=?")
            args.append(device_id)
        backward = ending_before is not None
        with self._lock:
            cursor_id = starting_after if starting_after is not None else ending_before
            if cursor_id is not None:
                name = "starting_after" if starting_after is not None else "ending_before"
                row = self._db.execute(
                    "SELECT time_created FROM participations WHERE id=? AND account_id=? "
                    "AND live_mode=?",
                    (cursor_id, namespace.account_id, int(namespace.live_mode)),
                ).fetchone()
                if row is None:
                    raise UnknownCursor(name, cursor_id)
                op = ">" if backward else "<"
                where.append(f"(time_created, id) {op} (?, ?)")
                args.extend([row[0], cursor_id])
            order = "ASC" if backward else "DESC"
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM participations WHERE {' AND '.join(where)} "
                f"ORDER BY time_created {order}, id {order} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        has_more = len(rows) > limit
        rows = rows[:limit]
        if backward:
            rows.reverse()
        return Page([_row_to_participation(r) for r in rows], has_more)

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM participations").fetchone()
        return int(n)

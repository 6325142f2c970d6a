"""The shared store: PostgreSQL through psycopg 3 and its async connection pool.

Any number of server processes (workers, replicas on other hosts) use one database and answer
as one process would. Concurrency is the database's: a participation's update locks its row
(`SELECT … FOR UPDATE`), an autopilot catch-up or a rate-limit bucket takes a transaction-scoped
advisory lock named after its namespace (`pg_advisory_xact_lock`), and the partial unique index
keeps one open participation per device and programme. Readers never wait for writers (MVCC),
so a long write of one tenant (a world load) holds up nobody else.

Needs the `postgres` extra: `pip install 'vpp-sandbox[postgres]'`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from vpp_sandbox.mock_server.store import (
    BACKFILL_COUNTS,
    INDEXES,
    TABLES,
    Encode,
    NextDue,
    Store,
    StoreUnavailable,
    Tx,
)

__all__ = ["PostgresStore"]

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise StoreUnavailable(
        "a postgresql:// --db needs psycopg 3: pip install 'vpp-sandbox[postgres]'"
    ) from exc

# Every statement and every wait for a pooled connection is bounded: a stuck database is an
# error answer, never a request that hangs forever.
STATEMENT_TIMEOUT_MS = 15_000
POOL_TIMEOUT_S = 15.0
# The whole schema is created under this advisory lock: replicas starting at once are fine.
_SCHEMA_LOCK = 0x7670_7073_616E_6478  # "vppsandx"


# `sandbox_counts` follows every insert and delete of a participation, whichever code path
# (create, world loads, resets, deleted accounts) makes it. Made once, under the schema lock
# (CREATE OR REPLACE TRIGGER would need PostgreSQL 14, and takes the table's lock each start).
_COUNTING = (
    """CREATE OR REPLACE FUNCTION sandbox_count_participations() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO sandbox_counts (account_id, live_mode, participations)
                VALUES (NEW.account_id, NEW.live_mode, 1)
                ON CONFLICT (account_id, live_mode)
                DO UPDATE SET participations = sandbox_counts.participations + 1;
                RETURN NEW;
            END IF;
            UPDATE sandbox_counts SET participations = participations - 1
            WHERE account_id = OLD.account_id AND live_mode = OLD.live_mode;
            RETURN OLD;
        END $$""",
    """DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'participations_counted'
                       AND tgrelid = 'participations'::regclass) THEN
            CREATE TRIGGER participations_counted AFTER INSERT OR DELETE ON participations
            FOR EACH ROW EXECUTE FUNCTION sandbox_count_participations();
        END IF;
    END $$""",
)


@functools.cache
def _sql(text: str) -> str:
    """Our `?` placeholders as psycopg's `%s` (no statement of ours contains `%` or a `?`
    inside a literal)."""
    return text.replace("?", "%s")


def _ddl(text: str) -> str:
    # Ids and times are compared as strings: byte order, whatever the database's locale.
    return text.replace(" TEXT", ' TEXT COLLATE "C"')


class _Connection(Tx):
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        cursor = await self.conn.execute(_sql(sql), args)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.conn.cursor() as cursor:
            await cursor.executemany(_sql(sql), list(rows))

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        cursor = await self.conn.execute(_sql(sql), args)
        row: tuple[Any, ...] | None = await cursor.fetchone()
        return row

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = await self.conn.execute(_sql(sql), args)
        return list(await cursor.fetchall())


class PostgresStore(Store):
    """The store on a PostgreSQL database; the pool opens on first use, in the serving loop."""

    kind = "postgresql"
    row_lock = " FOR UPDATE"

    def __init__(
        self, url: str, *, next_due: NextDue, encode: Encode, max_connections: int = 10
    ) -> None:
        super().__init__(next_due=next_due, encode=encode)
        self.url = url
        self._max = max_connections
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._opening = asyncio.Lock()

    def describe(self) -> str:
        try:
            info = conninfo_to_dict(self.url)
        except psycopg.ProgrammingError:
            return "PostgreSQL"
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
        return f"PostgreSQL {where}/{info.get('dbname', '')}"

    async def _open(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        async with self._opening:
            if self._pool is not None:
                return self._pool
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=self._max,
                timeout=POOL_TIMEOUT_S,
                open=False,
                kwargs={
                    "autocommit": True,
                    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                },
            )
            try:
                await pool.open(wait=True, timeout=POOL_TIMEOUT_S)
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    for sql in (*TABLES, *INDEXES):
                        await conn.execute(_ddl(sql))
                    await conn.execute(BACKFILL_COUNTS)
                    for sql in _COUNTING:
                        await conn.execute(sql)
            except (psycopg.Error, TimeoutError, OSError) as exc:
                await pool.close()
                raise StoreUnavailable(
                    f"cannot use the PostgreSQL database {self.describe()}: {exc}. Check the "
                    "URL (postgresql://USER:PASSWORD@HOST:PORT/DBNAME) and that the server runs."
                ) from exc
            self._pool = pool
            return pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _tx(self, lock: str | None = None) -> AsyncIterator[Tx]:
        pool = self._pool or await self._open()
        async with pool.connection() as conn, conn.transaction():
            if lock is not None:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,)
                )
            yield _Connection(conn)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Tx]:
        pool = self._pool or await self._open()
        async with pool.connection() as conn:
            yield _Connection(conn)

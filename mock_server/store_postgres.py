"""The shared store: PostgreSQL through psycopg 3 and its async connection pool.

Any number of server processes (workers, replicas on other hosts) use one database and answer
as one process would. Concurrency is the database's: a participation's update locks its row
(`SELECT … FOR UPDATE`), an autopilot catch-up or a rate-limit bucket takes a transaction-scoped
advisory lock named after its namespace (`pg_advisory_xact_lock`), and the partial unique index
keeps one open participation per device and programme. Readers never wait for writers (MVCC),
so a long write of one tenant (a world load) holds up nobody else.

A database that is down, unreachable or stuck is a `StoreUnavailable` (503 store_unavailable)
within `timeout` seconds: the wait for a pooled connection, every lock wait and every statement
are bounded. After a failure, connections are checked before use for a while, so those broken
by an outage are replaced at once and the first requests after the database returns succeed.

Needs the `postgres` extra: `pip install 'vpp-sandbox[postgres]'`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
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

# Every wait for a pooled connection or a lock is bounded by the store's `timeout` (this by
# default), and every statement by a little more: a stuck database is a quick error answer,
# never a request that hangs.
TIMEOUT_S = 3.0
_STATEMENT_MARGIN_MS = 2_000
# After a connection failed, each connection is checked (a round trip) before use this long.
_SUSPECT_S = 30.0
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
    share_lock = " FOR SHARE"

    def __init__(
        self,
        url: str,
        *,
        next_due: NextDue,
        encode: Encode,
        max_connections: int = 10,
        timeout: float = TIMEOUT_S,
    ) -> None:
        super().__init__(next_due=next_due, encode=encode)
        self.url = url
        self.timeout = timeout
        self._max = max_connections
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._opening = asyncio.Lock()
        self._suspect_until = 0.0

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
            wait_ms = int(self.timeout * 1000)
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=self._max,
                timeout=self.timeout,
                # A connection lost in an outage is tried again with a growing delay; giving up
                # soon lets the next request try at once (it would wait for the delay else).
                reconnect_timeout=self.timeout,
                open=False,
                kwargs={
                    "autocommit": True,
                    "connect_timeout": max(1, round(self.timeout)),
                    "options": f"-c lock_timeout={wait_ms} "
                    f"-c statement_timeout={wait_ms + _STATEMENT_MARGIN_MS}",
                },
            )
            try:
                await pool.open(wait=True, timeout=self.timeout)
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
        async with self._connection() as conn:
            committing = False
            try:
                async with conn.transaction():
                    if lock is not None:
                        await conn.execute(
                            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,)
                        )
                    yield _Connection(conn)
                    committing = True
            except psycopg.OperationalError as exc:
                if not committing:
                    raise
                # The connection failed during COMMIT: it may have been applied.
                self._suspect_until = time.monotonic() + _SUSPECT_S
                raise StoreUnavailable(
                    f"PostgreSQL {self.describe()}: {exc}", maybe_applied=True
                ) from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Tx]:
        async with self._connection() as conn:
            yield _Connection(conn)

    def _single(self) -> AbstractAsyncContextManager[Tx]:
        return self._read()  # autocommit: each statement its own transaction

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection (checked first for a while after a failure); the database's
        unavailability, as it shows anywhere in the block, as StoreUnavailable."""
        pool = self._pool or await self._open()
        try:
            conn = await self._checked(pool)
            try:
                yield conn
            finally:
                await pool.putconn(conn)  # a broken one is discarded and replaced
        except psycopg.OperationalError as exc:
            # Connection lost or refused, no pooled connection in time (PoolTimeout), a lock
            # or statement timeout, the server shutting down.
            self._suspect_until = time.monotonic() + _SUSPECT_S
            raise StoreUnavailable(f"PostgreSQL {self.describe()}: {exc}") from exc

    async def _checked(
        self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]
    ) -> psycopg.AsyncConnection[Any]:
        deadline = time.monotonic() + self.timeout
        for _ in range(self._max + 1):
            conn = await pool.getconn(timeout=max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= self._suspect_until:
                return conn
            try:
                await pool.check_connection(conn)
            except psycopg.OperationalError:
                await pool.putconn(conn)  # broken in the outage: the pool replaces it
                continue
            return conn
        raise psycopg.OperationalError("every pooled connection was broken")

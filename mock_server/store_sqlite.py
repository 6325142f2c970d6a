"""The embedded store: SQLite, a file in WAL mode (or `:memory:` for tests).

SQLite has one writer at a time per file, across threads and processes: `BEGIN IMMEDIATE`
takes it, so a write transaction (or an autopilot batch) is serialised with every other one,
including those of other server processes on the same file (`serve --workers N`). Readers
never wait for the writer in WAL mode. Statements are short (one row, or one batch of a bulk
operation), so they run inline on the event loop: a statement costs microseconds, a thread
hop would cost more than it saves. Waiting for the write lock is the exception: it never
blocks the event loop (other requests, reads above all, go on) and it is bounded, past
`timeout` a `StoreUnavailable` (503 store_unavailable); so is a checkpoint that keeps the
write-ahead log under `wal_bytes` however busy the writers are.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from vpp_sandbox.mock_server.store import (
    BACKFILL_COUNTS,
    INDEXES,
    INSERT_ROW,
    TABLES,
    Encode,
    NextDue,
    Row,
    Store,
    StoreUnavailable,
    Tx,
)

__all__ = ["SqliteStore"]

log = logging.getLogger("vpp_sandbox.mock_server")

# How long opening a file (its schema, with other processes starting at once) and a checkpoint
# in its thread wait for the lock.
BUSY_TIMEOUT_S = 10.0
# How long a request waits for the write lock, by default: batches are small, so the wait is
# normally milliseconds; past it another process holds the file (503 store_unavailable).
LOCK_TIMEOUT_S = 3.0
# SQLite's own wait inside one statement, on the event loop: a few milliseconds at most, the
# rest of a wait is spent asleep between attempts while other requests run.
_INLINE_BUSY_MS = 5
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# Past this size the WAL is checkpointed in full and truncated (writers wait, bounded).
WAL_BYTES = 64 * 1024 * 1024
# Incremental vacuum: pages handed back to the file system per step after a big delete.
_VACUUM_STEP = 64
# The WAL is copied back into the database (a checkpoint, with its fsync) off the event loop,
# in a thread on a connection of its own, once it holds this much; SQLite's own automatic
# checkpoint would run inside a committing request and stall every other one (tens of ms).
_CHECKPOINT_BYTES = 4 * 1024 * 1024


# `sandbox_counts` follows every insert and delete of a participation, whichever code path
# (create, world loads, resets, deleted accounts) makes it.
_COUNTING = (
    """CREATE TRIGGER IF NOT EXISTS participations_counted_in
        AFTER INSERT ON participations BEGIN
            INSERT INTO sandbox_counts (account_id, live_mode, participations)
            VALUES (NEW.account_id, NEW.live_mode, 1)
            ON CONFLICT (account_id, live_mode)
            DO UPDATE SET participations = participations + 1;
        END""",
    """CREATE TRIGGER IF NOT EXISTS participations_counted_out
        AFTER DELETE ON participations BEGIN
            UPDATE sandbox_counts SET participations = participations - 1
            WHERE account_id = OLD.account_id AND live_mode = OLD.live_mode;
        END""",
)


class _Connection(Tx):
    """The Tx protocol over a sqlite3 connection (statements run inline)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self.db.execute(sql, args).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.execute(sql, args).fetchone()
        return row

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.db.execute(sql, args).fetchall())


def _busy(exc: sqlite3.OperationalError) -> bool:
    """The database is locked by another connection (any process)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY_CODES


class SqliteStore(Store):
    """The store on one SQLite file (or in memory), one connection per store object."""

    kind = "sqlite"
    page_beside_state = False

    def __init__(
        self,
        path: str = ":memory:",
        *,
        next_due: NextDue,
        encode: Encode,
        timeout: float = LOCK_TIMEOUT_S,
        wal_bytes: int = WAL_BYTES,
    ) -> None:
        super().__init__(next_due=next_due, encode=encode)
        self.path = path
        self.timeout = timeout
        self.wal_bytes = wal_bytes
        # A passive checkpoint starts well before the bound (writers go on meanwhile).
        self._passive_bytes = min(_CHECKPOINT_BYTES, wal_bytes // 4)
        # The lock makes the one connection safe from threads (a test client's portal, tests
        # calling the store directly); a server process uses it from its event loop only.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        self._conn = _Connection(self._db)
        if path != ":memory:":
            # Only takes effect on a new file: space of deleted rows can be handed back
            # (`compact`), and 4 KiB pages keep a commit's WAL append small (docs/performance.md).
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("PRAGMA page_size=4096")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            # A WAL that was emptied by a checkpoint shrinks back to this when reused.
            self._db.execute(f"PRAGMA journal_size_limit={self._passive_bytes}")
        self._wal = f"{path}-wal"
        # The mode of the checkpoint running in a thread, if one is; whether the WAL has
        # passed `wal_bytes` and waits for a full checkpoint (this process's writers wait).
        self._checkpointing: str | None = None
        self._full_pending = False
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for sql in TABLES:
                self._db.execute(sql)
            # Files of the first releases may have a plain index of this name: make it unique.
            for row in self._db.execute("PRAGMA index_list(participations)").fetchall():
                if row[1] == "participations_open" and not row[2]:
                    self._db.execute("DROP INDEX participations_open")
            for sql in INDEXES:
                self._db.execute(sql)
            self._db.execute(BACKFILL_COUNTS)
            for sql in _COUNTING:
                self._db.execute(sql)
            self._db.execute("COMMIT")
            self._db.execute(f"PRAGMA busy_timeout={_INLINE_BUSY_MS}")

    def describe(self) -> str:
        return f"SQLite {self.path}"

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        with self._lock:
            self._db.close()

    @asynccontextmanager
    async def _tx(self, lock: str | None = None) -> AsyncIterator[Tx]:
        await self._begin()
        try:
            try:
                yield self._conn
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            self._lock.release()
        self._checkpoint_soon()

    async def _begin(self) -> None:
        """`BEGIN IMMEDIATE`, holding `self._lock` when it returns. While another connection
        (another process, a checkpoint) holds the file, wait asleep, so this process's other
        requests go on; past `timeout`, StoreUnavailable."""
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        while True:
            if self._full_pending and time.monotonic() < deadline:
                # This process's writers let the full checkpoint have the lock (it polls for
                # it; back-to-back batches would starve it and the WAL would grow unbounded).
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            self._lock.acquire()
            try:
                if self._db.in_transaction:  # pragma: no cover - a transaction body suspended
                    raise RuntimeError("nested SQLite transaction on one connection")
                self._db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                self._lock.release()
                if not _busy(exc):
                    raise
            except BaseException:
                self._lock.release()
                raise
            if time.monotonic() >= deadline:
                raise StoreUnavailable(
                    f"the SQLite file {self.path} stayed locked by another connection for "
                    f"{self.timeout:g} s"
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _checkpoint_soon(self) -> None:
        """Once the WAL is big, checkpoint it in a thread (the event loop goes on meanwhile):
        passively (writers go on), or past `wal_bytes`, where passive checkpoints have not kept
        up with busy writers, in full and truncating it (writers wait for it, bounded)."""
        if self.path == ":memory:":
            return
        try:
            size = os.stat(self._wal).st_size
        except OSError:
            return
        if size >= self.wal_bytes:
            self._full_pending = True
        elif size < self._passive_bytes:
            return
        if self._checkpointing is None:
            self._start_checkpoint()

    def _start_checkpoint(self) -> None:
        mode = self._checkpointing = "TRUNCATE" if self._full_pending else "PASSIVE"
        done = asyncio.get_running_loop().run_in_executor(None, self._checkpoint, mode)
        done.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        full, self._checkpointing = self._checkpointing == "TRUNCATE", None
        if not done.cancelled() and done.exception() is not None:
            log.warning("WAL checkpoint of %s failed: %s", self.path, done.exception())
        if full:
            self._full_pending = False  # done, or failed: the next commit looks again
        elif self._full_pending:
            self._start_checkpoint()  # the WAL passed the bound during a passive one

    def _checkpoint(self, mode: str) -> None:
        """`PRAGMA wal_checkpoint(mode)` on a connection of its own (any thread).

        A TRUNCATE that finds another checkpoint running (ours in the background, another
        process's) is busy at once: it tries again until it is done, for a few seconds.
        """
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        try:
            for _ in range(100):
                busy = db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()[0]
                if not busy or mode == "PASSIVE":
                    return
                time.sleep(0.05)
        finally:
            db.close()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Tx]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.OperationalError as exc:
                # A reader waits only while another connection recovers or resets the WAL.
                if _busy(exc):
                    raise StoreUnavailable(f"the SQLite file {self.path} is locked") from exc
                raise

    async def bulk_load(self, rows: Iterable[Row]) -> int:
        """One transaction; into an empty table the indexes are built once at the end, about
        twice as fast as keeping them up to date row by row."""
        ordered = sorted(rows)  # in id order the primary key index grows at its end
        async with self._tx():
            db = self._db
            empty = db.execute("SELECT 1 FROM participations LIMIT 1").fetchone() is None
            indexes = db.execute(
                "SELECT name, sql FROM sqlite_master WHERE type='index' "
                "AND tbl_name='participations' AND sql IS NOT NULL"
            ).fetchall()
            rebuild = empty and len(ordered) > 1000
            if rebuild:
                for name, _ in indexes:
                    db.execute(f"DROP INDEX {name}")
            db.executemany(INSERT_ROW, ordered)
            if rebuild:
                for _, sql in indexes:
                    db.execute(sql)
        return len(ordered)

    async def compact(self) -> None:
        """Hand free pages back to the file system, a step at a time, and empty the WAL."""
        if self.path == ":memory:":
            return
        with self._lock:
            incremental = self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        before = -1
        while incremental:
            try:
                async with self._tx():
                    free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
                    if not free or free == before:  # done, or a file made before INCREMENTAL
                        break
                    before = free
                    self._db.execute(f"PRAGMA incremental_vacuum({_VACUUM_STEP})").fetchall()
            except StoreUnavailable:
                return  # the file is busy: the next compaction hands the pages back
            await anyio.sleep(0)  # other requests go first between steps
        # Every page back into the file and the WAL emptied, off the event loop.
        await anyio.to_thread.run_sync(self._checkpoint, "TRUNCATE")

"""The embedded store: SQLite, a file in WAL mode (or `:memory:` for tests).

SQLite has one writer at a time per file, across threads and processes: `BEGIN IMMEDIATE`
takes it, so a write transaction (or an autopilot batch) is serialised with every other one,
including those of other server processes on the same file (`serve --workers N`). Readers
never wait for the writer in WAL mode. Statements are short (one row, or one batch of a bulk
operation), so they run inline on the event loop: a statement costs microseconds, a thread
hop would cost more than it saves.
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
    Tx,
)

__all__ = ["SqliteStore"]

log = logging.getLogger("vpp_sandbox.mock_server")

# How long a writer waits for another process's write transaction before giving up. Batches
# are small, so the wait is normally milliseconds.
BUSY_TIMEOUT_S = 10.0
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


class SqliteStore(Store):
    """The store on one SQLite file (or in memory), one connection per store object."""

    kind = "sqlite"

    def __init__(self, path: str = ":memory:", *, next_due: NextDue, encode: Encode) -> None:
        super().__init__(next_due=next_due, encode=encode)
        self.path = path
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
        self._wal = f"{path}-wal"
        self._checkpointing = False
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

    def describe(self) -> str:
        return f"SQLite {self.path}"

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        with self._lock:
            self._db.close()

    @asynccontextmanager
    async def _tx(self, lock: str | None = None) -> AsyncIterator[Tx]:
        with self._lock:
            if self._db.in_transaction:  # pragma: no cover - a transaction body suspended
                raise RuntimeError("nested SQLite transaction on one connection")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        self._checkpoint_soon()

    def _checkpoint_soon(self) -> None:
        """Once the WAL is big, checkpoint it in a thread (the event loop goes on meanwhile)."""
        if self._checkpointing or self.path == ":memory:":
            return
        try:
            if os.stat(self._wal).st_size < _CHECKPOINT_BYTES:
                return
        except OSError:
            return
        self._checkpointing = True
        done = asyncio.get_running_loop().run_in_executor(None, self._checkpoint, "PASSIVE")
        done.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not done.cancelled() and done.exception() is not None:
            log.warning("WAL checkpoint of %s failed: %s", self.path, done.exception())

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
            yield self._conn

    async def bulk_load(self, rows: Iterable[Row]) -> int:
        """One transaction; into an empty table the indexes are built once at the end, about
        twice as fast as keeping them up to date row by row."""
        ordered = sorted(rows)  # in id order the primary key index grows at its end
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
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
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return len(ordered)

    async def compact(self) -> None:
        """Hand free pages back to the file system, a step at a time, and empty the WAL."""
        if self.path == ":memory:":
            return
        with self._lock:
            incremental = self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        before = -1
        while incremental:
            with self._lock:
                free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
                if not free or free == before:  # done, or a file made before INCREMENTAL
                    break
                before = free
                self._db.execute(f"PRAGMA incremental_vacuum({_VACUUM_STEP})").fetchall()
            await anyio.sleep(0)  # other requests go first between steps
        # Every page back into the file and the WAL emptied, off the event loop.
        await anyio.to_thread.run_sync(self._checkpoint, "TRUNCATE")

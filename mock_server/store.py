"""The participations store over SQLite (a file by default, `:memory:` for tests), injected.

Every method runs in one transaction under one lock, so the store is safe from threads too; an
update is a read-modify-write guarded by a version column (compare-and-swap), so concurrent
updates of one participation are applied one on top of the other and never lose a write, even
across processes sharing the file.

The autopilot: every row keeps `next_due_at`, when its scenario's next move is due
(`mock_server.scenarios.next_step`), in an index per namespace, so `advance_due` touches only the
rows that are due, never the whole table. Each namespace's sandbox clock is kept here too.
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import orjson

from vpp_sandbox.mock_server.clock import ClockState, Namespace
from vpp_sandbox.mock_server.documents import check_document
from vpp_sandbox.mock_server.lifecycle import TERMINAL, LifecycleError, Participation, format_time
from vpp_sandbox.mock_server.scenarios import advance, next_step

__all__ = [
    "DuplicateParticipation",
    "ParticipationNotFound",
    "Store",
    "StoreError",
    "UnknownCursor",
    "next_due_at",
    "row_of",
]


log = logging.getLogger("mock_server")


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
    body          TEXT NOT NULL,
    next_due_at   TEXT
);
CREATE INDEX IF NOT EXISTS participations_list
    ON participations (account_id, live_mode, time_created DESC, id DESC);
CREATE INDEX IF NOT EXISTS participations_device
    ON participations (account_id, live_mode, device_id, time_created DESC, id DESC);
CREATE TABLE IF NOT EXISTS sandbox_clocks (
    account_id    TEXT NOT NULL,
    live_mode     INTEGER NOT NULL,
    offset_us     INTEGER NOT NULL,
    frozen_at     TEXT,
    autopilot     INTEGER NOT NULL,
    PRIMARY KEY (account_id, live_mode)
);
"""
# Files written before the index was dropped have it: every insert paid for one more index
# leaf (insert + commit 134 -> 101 us); the duplicate check finds a device's few rows through
# participations_device instead.
_DROPPED_INDEXES = ("participations_open",)
# Created after the migration below (an older file has no next_due_at column yet).
_DUE_INDEX = """
CREATE INDEX IF NOT EXISTS participations_due
    ON participations (account_id, live_mode, next_due_at) WHERE next_due_at IS NOT NULL;
"""

_COLUMNS = "body, scenario"


def _row_to_participation(row: sqlite3.Row | tuple[Any, ...]) -> Participation:
    return Participation.from_json(orjson.loads(row[0]), scenario=row[1])


def _encode(p: Participation) -> str:
    return orjson.dumps(p.to_json()).decode()


def next_due_at(p: Participation) -> str | None:
    """When the autopilot's next move of `p` is due (the indexed column), or None."""
    due = next_step(p)
    return None if due is None else format_time(due.at)


_COMPUTE: Any = object()


def row_of(
    p: Participation,
    body: str,
    *,
    time_created: datetime | None = None,
    due_at: str | None = _COMPUTE,
) -> tuple[Any, ...]:
    """The stored row of a new participation whose API JSON is `body` (`load_rows`' input).

    A loader that moved `p` in time without rebuilding it (its `body` already moved) passes
    the moved `time_created` and `due_at`; by default both are `p`'s own.
    """
    return _row_values(p, body, 1, time_created=time_created, due_at=due_at)


def _row_values(
    p: Participation,
    body: str,
    version: int,
    *,
    time_created: datetime | None = None,
    due_at: str | None = _COMPUTE,
) -> tuple[Any, ...]:
    state = p.current_state
    return (
        p.id,
        p.account_id,
        int(p.live_mode),
        p.device_id,
        p.programme.id,
        state.value,
        int(state in TERMINAL),
        format_time(time_created or p.time_created),
        p.scenario,
        version,
        body,
        next_due_at(p) if due_at is _COMPUTE else due_at,
    )


_BODY = 10  # the body's place in a row (`_row_values`, `_INSERT_COLUMNS`)


def _checked(row: tuple[Any, ...]) -> tuple[Any, ...]:
    check_document(row[_BODY])
    return row


_INSERT_COLUMNS = (
    "(id, account_id, live_mode, device_id, programme_id, current_state, terminal, "
    "time_created, scenario, version, body, next_due_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Store:
    """Participations keyed by id, each in its (account, live_mode) namespace."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        if path != ":memory:":
            # 4 KiB pages: a commit appends every page it dirtied (the row's leaf and one leaf
            # per index) to the WAL, and 8 KiB pages doubled that (insert + commit 133 -> 97
            # us). 8 KiB pages would hold three participations (~2.3 KB) each, not one: a bulk
            # load of 100,000 inserts in 5.4 s instead of 6.6 s. Requests come first. Only
            # takes effect on a new file.
            self._db.execute("PRAGMA page_size=4096")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._drop_old_indexes()
        self._migrate()
        self._db.executescript(_DUE_INDEX)

    def _drop_old_indexes(self) -> None:
        for name in _DROPPED_INDEXES:
            found = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (name,)
            ).fetchone()
            if found is not None:
                self._db.execute(f"DROP INDEX IF EXISTS {name}")

    def _migrate(self) -> None:
        """Files written before the autopilot lack `next_due_at`: add it and fill it in."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(participations)")}
        if "next_due_at" in columns:
            return
        with self._transaction() as db:
            db.execute("ALTER TABLE participations ADD COLUMN next_due_at TEXT")
            rows = db.execute(f"SELECT {_COLUMNS}, id FROM participations").fetchall()
            db.executemany(
                "UPDATE participations SET next_due_at=? WHERE id=?",
                [(next_due_at(_row_to_participation(r)), r[2]) for r in rows],
            )

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

    def insert(self, participation: Participation) -> str:
        """Add a new participation; a duplicate open one for the device and programme is refused.

        Returns the stored JSON text (the API object, as `get_json` would read it back).
        """
        p = participation
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM participations WHERE account_id=? AND live_mode=? "
                "AND device_id=? AND programme_id=? AND terminal=0 LIMIT 1",
                (p.account_id, int(p.live_mode), p.device_id, p.programme.id),
            ).fetchone()
            if row is not None and p.current_state not in TERMINAL:
                raise DuplicateParticipation(_row_to_participation(row))
            return self._write(db, p, version=1)

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
        return self._update(namespace, participation_id, change)[0]

    def update_json(
        self,
        namespace: Namespace,
        participation_id: str,
        change: Callable[[Participation], Participation],
    ) -> str:
        """`update`, returning the stored JSON text of the result (see `get_json`)."""
        return self._update(namespace, participation_id, change)[1]

    def _update(
        self,
        namespace: Namespace,
        participation_id: str,
        change: Callable[[Participation], Participation],
    ) -> tuple[Participation, str]:
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
                return current, str(row[0])
            return updated, self._rewrite(db, updated, row[2])

    @staticmethod
    def _rewrite(db: sqlite3.Connection, p: Participation, version: int) -> str:
        body = _encode(p)
        check_document(body)  # before the write: a document that breaks the spec is never stored
        cursor = db.execute(
            "UPDATE participations SET current_state=?, terminal=?, scenario=?, body=?, "
            "next_due_at=?, version=version+1 WHERE id=? AND version=?",
            (
                p.current_state.value,
                int(p.current_state in TERMINAL),
                p.scenario,
                body,
                next_due_at(p),
                p.id,
                version,
            ),
        )
        if cursor.rowcount != 1:  # pragma: no cover - only with another process writing
            raise RuntimeError(f"{p.id} changed during the update")
        return body

    def advance_due(self, namespace: Namespace, now: datetime) -> int:
        """The autopilot: apply every move due at or before `now` in the namespace.

        Each move happens at its scheduled time (`mock_server.scenarios.advance`). Only rows
        whose indexed `next_due_at` has passed are read, so a request with nothing due costs one
        index probe. Returns how many participations moved.
        """
        key = (namespace.account_id, int(namespace.live_mode), format_time(now))
        with self._lock:
            probe = self._db.execute(
                "SELECT 1 FROM participations WHERE account_id=? AND live_mode=? "
                "AND next_due_at IS NOT NULL AND next_due_at<=? LIMIT 1",
                key,
            ).fetchone()
            if probe is None:
                return 0
            with self._transaction() as db:
                rows = db.execute(
                    f"SELECT {_COLUMNS}, version FROM participations WHERE account_id=? "
                    "AND live_mode=? AND next_due_at IS NOT NULL AND next_due_at<=?",
                    key,
                ).fetchall()
                for row in rows:
                    current = _row_to_participation(row)
                    try:
                        moved = advance(current, now)
                    except LifecycleError:  # pragma: no cover - a scenario bug: stop, never 500
                        log.exception("autopilot could not advance %s", current.id)
                        db.execute(
                            "UPDATE participations SET next_due_at=NULL WHERE id=?", (current.id,)
                        )
                        continue
                    self._rewrite(db, moved, row[2])
            return len(rows)

    def load(
        self,
        participations: Iterable[Participation],
        *,
        encode: Callable[[Participation], str] = _encode,
        replace: bool = True,
    ) -> int:
        """Insert participations as they are (a world, a fixture), in one transaction.

        `replace` overwrites rows with the same id; without it an id that exists is an error.
        `encode` turns a participation into its stored JSON (a world loader passes a faster one).
        """
        return self.load_rows((row_of(p, encode(p)) for p in participations), replace=replace)

    def load_rows(self, rows: Iterable[tuple[Any, ...]], *, replace: bool = True) -> int:
        """`load` for rows already in the stored form (`row_of`): a world loader's fast path."""
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        # In id order, the primary key index grows at its end instead of splitting pages.
        rows = sorted(rows)
        for row in rows:
            check_document(row[_BODY])  # each document once, before anything is written
        with self._transaction() as db:
            before = db.total_changes
            empty = db.execute("SELECT 1 FROM participations LIMIT 1").fetchone() is None
            indexes = db.execute(
                "SELECT name, sql FROM sqlite_master WHERE type='index' "
                "AND tbl_name='participations' AND sql IS NOT NULL"
            ).fetchall()
            # A bulk load into an empty table: building the indexes once at the end is about
            # twice as fast as keeping them up to date row by row.
            rebuild = empty and len(rows) > 1000
            if rebuild:
                for name, _ in indexes:
                    db.execute(f"DROP INDEX {name}")
            db.executemany(f"{verb} INTO participations {_INSERT_COLUMNS}", rows)
            if rebuild:
                for _, sql in indexes:
                    db.execute(sql)
            return db.total_changes - before

    def reset(self) -> None:
        """Forget every participation and every namespace's clock."""
        with self._transaction() as db:
            db.execute("DELETE FROM participations")
            db.execute("DELETE FROM sandbox_clocks")

    def replace_namespace(
        self,
        namespace: Namespace,
        participations: Iterable[Participation],
        *,
        encode: Callable[[Participation], str] = _encode,
    ) -> tuple[int, int]:
        """Delete the namespace's participations and insert these, atomically: (deleted, added)."""
        key = (namespace.account_id, int(namespace.live_mode))
        rows = (_checked(_row_values(p, encode(p), 1)) for p in participations)
        with self._transaction() as db:
            deleted = db.execute(
                "DELETE FROM participations WHERE account_id=? AND live_mode=?", key
            ).rowcount
            before = db.total_changes
            db.executemany(f"INSERT INTO participations {_INSERT_COLUMNS}", rows)
            return deleted, db.total_changes - before

    def delete_namespace(self, namespace: Namespace) -> int:
        """Forget the namespace's participations (not its clock); returns how many."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM participations WHERE account_id=? AND live_mode=?",
                (namespace.account_id, int(namespace.live_mode)),
            )
            return cursor.rowcount

    @staticmethod
    def _write(db: sqlite3.Connection, p: Participation, *, version: int) -> str:
        body = _encode(p)
        check_document(body)  # before the write: a document that breaks the spec is never stored
        db.execute(f"INSERT INTO participations {_INSERT_COLUMNS}", _row_values(p, body, version))
        return body

    # -- sandbox clocks ------------------------------------------------------------------------

    def clock_state(self, namespace: Namespace) -> ClockState | None:
        """The namespace's stored clock, or None while it follows real time untouched."""
        with self._lock:
            row = self._db.execute(
                "SELECT offset_us, frozen_at, autopilot FROM sandbox_clocks "
                "WHERE account_id=? AND live_mode=?",
                (namespace.account_id, int(namespace.live_mode)),
            ).fetchone()
        if row is None:
            return None
        return ClockState(
            offset=timedelta(microseconds=row[0]),
            frozen_at=None if row[1] is None else datetime.fromisoformat(row[1]),
            autopilot=bool(row[2]),
        )

    def save_clock_state(self, namespace: Namespace, state: ClockState | None) -> None:
        """Store the namespace's clock (None: forget it, back to real time)."""
        key = (namespace.account_id, int(namespace.live_mode))
        with self._transaction() as db:
            if state is None:
                db.execute("DELETE FROM sandbox_clocks WHERE account_id=? AND live_mode=?", key)
                return
            offset_us = state.offset // timedelta(microseconds=1)
            frozen = None if state.frozen_at is None else state.frozen_at.isoformat()
            db.execute(
                "INSERT OR REPLACE INTO sandbox_clocks "
                "(account_id, live_mode, offset_us, frozen_at, autopilot) VALUES (?, ?, ?, ?, ?)",
                (*key, offset_us, frozen, int(state.autopilot)),
            )

    # -- reads ---------------------------------------------------------------------------------

    def get(self, namespace: Namespace, participation_id: str) -> Participation:
        return _row_to_participation(self._get_row(namespace, participation_id))

    def get_json(self, namespace: Namespace, participation_id: str) -> str:
        """The participation's API object as stored JSON text (`get(...).to_json()`, encoded).

        Reads answer with this text as it is: the body column is written from `to_json()` (or
        the world's equal document) on every write, so decoding and encoding again is waste.
        """
        return str(self._get_row(namespace, participation_id)[0])

    def _get_row(self, namespace: Namespace, participation_id: str) -> tuple[Any, ...]:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(
                f"SELECT {_COLUMNS} FROM participations WHERE id=? AND account_id=? "
                "AND live_mode=?",
                (participation_id, namespace.account_id, int(namespace.live_mode)),
            ).fetchone()
        if row is None:
            raise ParticipationNotFound(namespace, participation_id)
        return row

    def all(self) -> list[Participation]:
        """Every participation of every namespace, oldest first (for worlds and autopilots)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM participations ORDER BY time_created, id"
            ).fetchall()
        return [_row_to_participation(r) for r in rows]

    def list_json(
        self,
        namespace: Namespace,
        *,
        limit: int = 30,
        starting_after: str | None = None,
        ending_before: str | None = None,
        device_id: str | None = None,
    ) -> tuple[builtins.list[str], bool]:
        """A page newest first by (time_created, id), each item as its stored JSON text (see
        `get_json`), and `has_more`; keyset cursors keep it stable."""
        rows, has_more = self._page_rows(namespace, limit, starting_after, ending_before, device_id)
        return [str(r[0]) for r in rows], has_more

    def _page_rows(
        self,
        namespace: Namespace,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        device_id: str | None,
    ) -> tuple[builtins.list[Any], bool]:
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
        return rows, has_more

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM participations").fetchone()
        return int(n)

"""The store: participations and every piece of shared sandbox state, persisted, nothing else.

One interface, two engines (`store_sqlite.SqliteStore`, the embedded default, and
`store_postgres.PostgresStore`, for replicas sharing one database). The SQL and the logic live
here once; an engine supplies connections, transactions and its locking:

- a write of one participation runs under its row lock (SQLite: the database's one writer;
  PostgreSQL: `SELECT … FOR UPDATE`), and a version column makes a lost update impossible;
- the autopilot's catch-up of a namespace runs under a per-namespace lock (SQLite: the one
  writer; PostgreSQL: `pg_advisory_xact_lock`), so a due step is applied exactly once;
- "one open participation per device and programme" is a partial unique index.

Nothing is cached per process: clocks, rate-limit buckets, the catalogue of known ids, accounts
and the signing secret are rows, so any number of processes answer as one would.

Policy stays out. The store is told how to compute a row's `next_due_at` (`next_due`, the
autopilot's rule), how a participation becomes its stored document (`encode`, which checks it
against the spec: `documents.encode_checked`), what a due participation becomes (`apply_due`'s
`move`), whether a namespace or the accounts may grow (`admit`, given the count in the
transaction) and how a rate-limit bucket changes (`update_rate_bucket`'s `step`). It raises
codes with the facts, never prose: the service layer words them (`mock_server.participations`).
Importing it loads no web framework.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar

import anyio
import orjson

from vpp_sandbox.mock_server.clock import ClockState, Namespace
from vpp_sandbox.mock_server.lifecycle import TERMINAL, Participation, format_time
from vpp_sandbox.mock_server.ratelimit import Bucket

__all__ = [
    "BACKFILL_COUNTS",
    "INSERT_ROW",
    "AccountDeletion",
    "AccountGone",
    "AccountRecord",
    "Admit",
    "DuplicateParticipation",
    "Encode",
    "FaultRule",
    "Job",
    "NamespaceFull",
    "NamespaceState",
    "NextDue",
    "ParticipationNotFound",
    "Row",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Tx",
    "UnknownCursor",
    "row_of",
]

NextDue = Callable[[Participation], datetime | None]
# A participation as its stored document (the API object's JSON text).
Encode = Callable[[Participation], str]
# Whether one more may be added to what is held (the count read in the transaction).
Admit = Callable[[int], bool]
# The stored row of a participation (`Store.row`): the column order of `INSERT_ROW`.
Row = tuple[Any, ...]
T = TypeVar("T")


class StoreError(Exception):
    """A request the store refuses; `code` names it in the error catalogue. No prose: the
    service layer says what it means to a client."""

    code = "internal_error"


class StoreUnavailable(Exception):
    """The database cannot be opened, reached or locked in time (its message says how to fix
    it). `maybe_applied`: it failed while committing, so the change may have been saved."""

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class ParticipationNotFound(StoreError):
    code = "participation_not_found"

    def __init__(self, namespace: Namespace, participation_id: str) -> None:
        super().__init__(participation_id)
        self.namespace = namespace
        self.participation_id = participation_id


class DuplicateParticipation(StoreError):
    code = "participation_exists"

    def __init__(self, existing: Participation) -> None:
        super().__init__(existing.id)
        self.existing = existing
        self.existing_id = existing.id


class NamespaceFull(StoreError):
    code = "namespace_full"

    def __init__(self, held: int) -> None:
        super().__init__(held)
        self.held = held


class AccountGone(StoreError):
    """The account was deleted (or its deletion began) before this write: nothing was written."""

    code = "token_invalid"

    def __init__(self, account_id: str) -> None:
        super().__init__(account_id)
        self.account_id = account_id


class UnknownCursor(StoreError):
    code = "invalid_parameter"

    def __init__(self, name: str, participation_id: str) -> None:
        super().__init__(name, participation_id)
        self.name = name
        self.participation_id = participation_id


class PageQuery(NamedTuple):
    """Which page of a namespace's participations a list asks for (its checked arguments)."""

    limit: int = 30
    starting_after: str | None = None
    ending_before: str | None = None
    device_id: str | None = None


# A page: each item's stored JSON text, newest first, and whether more lie in its direction.
Page = tuple[list[str], bool]


class NamespaceState(NamedTuple):
    """A namespace's clock, earliest due step, waiting fault rules and, when asked, one
    participation's stored JSON or one page of them (`namespace_state`)."""

    clock: ClockState | None
    earliest_due: str | None
    faults: bool = False
    participation: str | None = None
    page: Page | None = None


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """What the store keeps of an account made on demand (keys as SHA-256 hex digests)."""

    account_id: str
    test_key_sha256: str
    live_key_sha256: str
    time_created: str


@dataclass(frozen=True, slots=True)
class Job:
    """Heavy work that holds a scope's lease: what it is, when it started (real time), and
    who holds it (as `take_job` was told)."""

    kind: str
    started: str
    holder: str = ""


@dataclass(frozen=True, slots=True)
class AccountDeletion:
    """What deleting an account removed with it."""

    test_participations: int
    live_participations: int
    clocks: int


class Tx(Protocol):
    """One connection inside a transaction (or autocommit reads); SQL uses `?` placeholders."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a statement; returns the rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


# The tables both engines create (an engine may add its own options around them).
TABLES = (
    """CREATE TABLE IF NOT EXISTS participations (
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
    )""",
    """CREATE TABLE IF NOT EXISTS sandbox_clocks (
        account_id    TEXT NOT NULL,
        live_mode     INTEGER NOT NULL,
        offset_us     BIGINT NOT NULL,
        frozen_at     TEXT,
        autopilot     INTEGER NOT NULL,
        PRIMARY KEY (account_id, live_mode)
    )""",
    """CREATE TABLE IF NOT EXISTS sandbox_rate_buckets (
        account_id    TEXT NOT NULL,
        live_mode     INTEGER NOT NULL,
        tokens        DOUBLE PRECISION NOT NULL,
        stamp         DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (account_id, live_mode)
    )""",
    # What the world of `serve --world` knows (the operator's, for every namespace).
    """CREATE TABLE IF NOT EXISTS sandbox_catalog (
        kind          TEXT NOT NULL,
        id            TEXT NOT NULL,
        data          TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    )""",
    # What the world a namespace loaded knows (POST /_sandbox/world): that namespace's own,
    # replaced by its next load, gone with a reset or its account.
    """CREATE TABLE IF NOT EXISTS sandbox_namespace_catalog (
        account_id    TEXT NOT NULL,
        live_mode     INTEGER NOT NULL,
        kind          TEXT NOT NULL,
        id            TEXT NOT NULL,
        data          TEXT NOT NULL,
        PRIMARY KEY (account_id, live_mode, kind, id)
    )""",
    # How many participations each namespace holds, kept by the engine's triggers on every
    # insert and delete (store_sqlite.py, store_postgres.py): `--max-participations` is
    # checked with one lookup, not a count.
    """CREATE TABLE IF NOT EXISTS sandbox_counts (
        account_id     TEXT NOT NULL,
        live_mode      INTEGER NOT NULL,
        participations BIGINT NOT NULL,
        PRIMARY KEY (account_id, live_mode)
    )""",
    """CREATE TABLE IF NOT EXISTS sandbox_meta (
        key           TEXT PRIMARY KEY,
        value         TEXT NOT NULL
    )""",
    # Accounts made on demand. Keys are kept as SHA-256 digests only: mock_server/accounts.py
    # makes them and checks them.
    """CREATE TABLE IF NOT EXISTS sandbox_accounts (
        account_id      TEXT PRIMARY KEY,
        test_key_sha256 TEXT NOT NULL,
        live_key_sha256 TEXT NOT NULL,
        time_created    TEXT NOT NULL
    )""",
    # Heavy work running somewhere (any process): a lease per scope (a namespace's world load,
    # reset or clock move; an account's deletion; a world builder's slot), renewed while the
    # work runs, so a crashed holder's lease expires (mock_server/admission.py decides).
    """CREATE TABLE IF NOT EXISTS sandbox_jobs (
        scope         TEXT PRIMARY KEY,
        kind          TEXT NOT NULL,
        started       TEXT NOT NULL,
        holder        TEXT NOT NULL,
        expires       DOUBLE PRECISION NOT NULL
    )""",
    # Accounts deleted (DELETE /_sandbox/accounts/{id}): kept so that no write into one can
    # land after its deletion began, and so that a deletion a crash interrupted is finished by
    # the next DELETE or the next start (`finished` 0 until then).
    """CREATE TABLE IF NOT EXISTS sandbox_deleted_accounts (
        account_id    TEXT PRIMARY KEY,
        deleted_at    TEXT NOT NULL,
        finished      INTEGER NOT NULL
    )""",
    # Fault rules a namespace set through the control API (`POST /_sandbox/faults`), consumed
    # by mock_server/faults.py: rows, so every process sharing the data answers alike.
    """CREATE TABLE IF NOT EXISTS sandbox_faults (
        id            TEXT PRIMARY KEY,
        account_id    TEXT NOT NULL,
        live_mode     INTEGER NOT NULL,
        seq           BIGINT NOT NULL,
        operation     TEXT NOT NULL,
        status        INTEGER,
        retry_after   INTEGER,
        latency_ms    INTEGER,
        drop_conn     INTEGER NOT NULL,
        times         INTEGER NOT NULL,
        remaining     INTEGER NOT NULL,
        time_created  TEXT NOT NULL
    )""",
)
INDEXES = (
    """CREATE INDEX IF NOT EXISTS sandbox_faults_namespace
        ON sandbox_faults (account_id, live_mode, seq)""",
    """CREATE INDEX IF NOT EXISTS participations_list
        ON participations (account_id, live_mode, time_created DESC, id DESC)""",
    """CREATE INDEX IF NOT EXISTS participations_device
        ON participations (account_id, live_mode, device_id, time_created DESC, id DESC)""",
    # One open (non-terminal) participation per device and programme in a namespace.
    """CREATE UNIQUE INDEX IF NOT EXISTS participations_open
        ON participations (account_id, live_mode, device_id, programme_id) WHERE terminal = 0""",
    """CREATE INDEX IF NOT EXISTS participations_due
        ON participations (account_id, live_mode, next_due_at) WHERE next_due_at IS NOT NULL""",
)

# A store file or database made before `sandbox_counts` existed: count what it holds, once,
# in the transaction that creates the table and its triggers.
BACKFILL_COUNTS = (
    "INSERT INTO sandbox_counts (account_id, live_mode, participations) "
    "SELECT account_id, live_mode, COUNT(*) FROM participations "
    "WHERE NOT EXISTS (SELECT 1 FROM sandbox_counts) GROUP BY account_id, live_mode"
)

_COLUMNS = "body, scenario"
INSERT_ROW = (
    "INSERT INTO participations (id, account_id, live_mode, device_id, programme_id, "
    "current_state, terminal, time_created, scenario, version, body, next_due_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_OPEN = (
    f"{INSERT_ROW} ON CONFLICT (account_id, live_mode, device_id, programme_id) "
    "WHERE terminal = 0 DO NOTHING"
)
_REWRITE = (
    "UPDATE participations SET current_state=?, terminal=?, scenario=?, body=?, next_due_at=?, "
    "version=version+1 WHERE id=? AND version=?"
)
_NS = "account_id=? AND live_mode=?"
_FAULT_COLUMNS = (
    "id, operation, status, retry_after, latency_ms, drop_conn, times, remaining, "
    "time_created"
)


@dataclass(frozen=True)
class FaultRule:
    """A fault rule: the next `remaining` calls of `operation` ("*": any VPP operation) answer
    `status`, wait `latency_ms` first, or have their connection dropped."""

    id: str
    operation: str
    status: int | None
    retry_after: int | None
    latency_ms: int | None
    drop: bool
    times: int  # as set
    remaining: int
    time_created: str


def _fault_of(row: Sequence[Any], used: int = 0) -> FaultRule:
    """A rule from its row (`_FAULT_COLUMNS`), `used` of its calls taken since it was read."""
    return FaultRule(
        str(row[0]), str(row[1]), row[2], row[3], row[4], bool(row[5]), int(row[6]),
        int(row[7]) - used, str(row[8]),
    )  # fmt: skip


def _fault_row(rule: FaultRule) -> tuple[Any, ...]:
    return (
        rule.id, rule.operation, rule.status, rule.retry_after, rule.latency_ms,
        int(rule.drop), rule.times, rule.remaining, rule.time_created,
    )  # fmt: skip


def _participation(row: Sequence[Any]) -> Participation:
    return Participation.from_json(orjson.loads(row[0]), scenario=row[1])


def _cursor(query: PageQuery) -> str | None:
    if query.starting_after is not None and query.ending_before is not None:
        raise ValueError("starting_after and ending_before are exclusive")
    return query.starting_after if query.starting_after is not None else query.ending_before


def _page_sql(
    namespace: Namespace, query: PageQuery, *, columns: str = "body"
) -> tuple[str, list[Any]]:
    """The statement of a page (one row more than asked: whether there are more), its cursor's
    position read in it; a cursor that is not a participation of the namespace gives none."""
    where = [_NS]
    args: list[Any] = [*_ns(namespace)]
    if query.device_id is not None:
        where.append("device_id=?")
        args.append(query.device_id)
    cursor_id = _cursor(query)
    backward = query.ending_before is not None
    if cursor_id is not None:
        where.append(
            f"(time_created, id) {'>' if backward else '<'} "
            f"((SELECT time_created FROM participations WHERE id=? AND {_NS}), ?)"
        )
        args.extend([cursor_id, *_ns(namespace), cursor_id])
    order = "ASC" if backward else "DESC"
    sql = (
        f"SELECT {columns} FROM participations WHERE {' AND '.join(where)} "
        f"ORDER BY time_created {order}, id {order} LIMIT ?"
    )
    return sql, [*args, query.limit + 1]


def _page(query: PageQuery, bodies: list[Any]) -> Page:
    """The page of a query from its rows (in the order read), and `has_more`."""
    items = [str(body) for body in bodies[: query.limit]]
    if query.ending_before is not None:
        items.reverse()
    return items, len(bodies) > query.limit


def _namespace_state(row: Sequence[Any]) -> NamespaceState:
    """(participation body, earliest due, faults, offset_us, frozen_at, autopilot) as read."""
    return NamespaceState(
        None if row[3] is None else _clock_state(row[3:6]),
        None if row[1] is None else str(row[1]),
        bool(row[2]),
        None if row[0] is None else str(row[0]),
    )


def _ns(namespace: Namespace) -> tuple[str, int]:
    return namespace.account_id, int(namespace.live_mode)


def _clock_state(row: Sequence[Any]) -> ClockState:
    """A `sandbox_clocks` row's (offset_us, frozen_at, autopilot) as the clock's state."""
    return ClockState(
        offset=timedelta(microseconds=int(row[0])),
        frozen_at=None if row[1] is None else datetime.fromisoformat(row[1]),
        autopilot=bool(row[2]),
    )


def _lock(purpose: str, namespace: Namespace) -> str:
    return f"{purpose}:{namespace.account_id}:{int(namespace.live_mode)}"


def row_of(
    p: Participation,
    body: str,
    *,
    next_due: datetime | None,
    version: int = 1,
    time_created: datetime | None = None,
) -> Row:
    """The stored row of `p` whose API JSON is `body`.

    A loader that moved `p` in time without rebuilding it (its `body` already moved) passes
    the moved `time_created` and `next_due`.
    """
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
        None if next_due is None else format_time(next_due),
    )


@dataclass(frozen=True, slots=True)
class Moved:
    """What `apply_due` did with one batch: rows looked at, and whether more may be due."""

    moved: int
    more: bool


class Store:
    """Participations keyed by id, each in its (account, live_mode) namespace; async throughout.

    Subclasses give `_tx` (a write transaction, optionally under a namespace's lock) and `_read`
    (a connection for reads); the SQL is shared and written with `?` placeholders.
    """

    kind = "abstract"
    # How a read locks the rows it will rewrite until the transaction ends, and how it keeps a
    # row from being deleted until then (SQLite's one writer needs nothing more).
    row_lock = ""
    share_lock = ""
    # Whether a list's page is best read in the statement that reads the namespace's state:
    # where a statement is a round trip to a server. Where statements run in process, two
    # narrow ones cost less than one that repeats the state beside every item (SQLite: 40
    # against 53 µs a page, bench/page_read.py), so the pipeline asks for no page with the state.
    page_beside_state = True

    def __init__(self, *, next_due: NextDue, encode: Encode) -> None:
        self._next_due = next_due
        self._encode = encode

    # -- the engine's part ----------------------------------------------------------------------

    def _tx(self, lock: str | None = None) -> AbstractAsyncContextManager[Tx]:
        """A write transaction; `lock` names work that must not run twice at once anywhere
        (an engine with one writer, like SQLite, has that already)."""
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[Tx]:
        raise NotImplementedError

    def _single(self) -> AbstractAsyncContextManager[Tx]:
        """A connection for statements each atomic on its own (no transaction around them
        where the engine can skip one: PostgreSQL's autocommit saves its round trips)."""
        return self._tx()

    async def close(self) -> None:
        """Release connections."""

    def describe(self) -> str:
        """Where the data is, for the start-up banner (no password)."""
        return self.kind

    # -- rows -----------------------------------------------------------------------------------

    def row(
        self,
        p: Participation,
        body: str | None = None,
        *,
        version: int = 1,
        time_created: datetime | None = None,
        next_due: datetime | bool | None = True,
    ) -> Row:
        """`row_of(p)` with this store's encoder (unless `body` is given) and due-time rule
        (unless `next_due` is given)."""
        due = self._next_due(p) if next_due is True else next_due
        return row_of(
            p,
            self._encode(p) if body is None else body,
            version=version,
            time_created=time_created,
            next_due=due or None,
        )

    # -- participations: writes ------------------------------------------------------------------

    async def insert(self, participation: Participation, *, admit: Admit | None = None) -> str:
        """Add a new participation; a second open one for the device and programme is refused,
        and so is one more in a namespace `admit` refuses given what it holds (`NamespaceFull`).

        Returns the stored JSON text (the API object, as `get_json` reads it back).
        """
        row = self.row(participation)
        async with self._tx() as tx:
            await self._alive(tx, participation.account_id)
            if admit is not None:
                count = await self._held(tx, Namespace(row[1], bool(row[2])))
                if not admit(count):
                    raise NamespaceFull(count)
            if participation.current_state in TERMINAL:
                await tx.execute(INSERT_ROW, row)
                return str(row[10])
            if await tx.execute(_INSERT_OPEN, row) == 1:
                return str(row[10])
            existing = await tx.fetchone(
                f"SELECT {_COLUMNS} FROM participations WHERE {_NS} AND device_id=? "
                "AND programme_id=? AND terminal=0",
                (*row[1:3], participation.device_id, participation.programme.id),
            )
        if existing is None:  # pragma: no cover - the conflict was an id collision
            raise StoreError(f"participation {participation.id} exists")
        raise DuplicateParticipation(_participation(existing))

    async def update(
        self,
        namespace: Namespace,
        participation_id: str,
        change: Callable[[Participation], Participation],
    ) -> str:
        """Apply `change` to the stored participation atomically; returns the stored JSON.

        `change` may raise: nothing is written then. The row is locked for the transaction and
        the version check makes a lost update impossible even where locks are weaker.
        """
        async with self._tx() as tx:
            found = await tx.fetchone(
                f"SELECT {_COLUMNS}, version FROM participations WHERE id=? AND {_NS}"
                + self.row_lock,
                (participation_id, *_ns(namespace)),
            )
            if found is None:
                raise ParticipationNotFound(namespace, participation_id)
            current = _participation(found)
            updated = change(current)
            if updated is current or updated == current:
                return str(found[0])
            row = self.row(updated, version=found[2])
            await self._rewrite(tx, row)
            return str(row[10])

    async def _rewrite(self, tx: Tx, row: Row) -> None:
        changed = await tx.execute(
            _REWRITE, (row[5], row[6], row[8], row[10], row[11], row[0], row[9])
        )
        if changed != 1:  # pragma: no cover - only if a writer ignored the row lock
            raise RuntimeError(f"{row[0]} changed during the update")

    async def has_due(self, namespace: Namespace, now: datetime) -> bool:
        """Whether any participation of the namespace has an autopilot move due by `now`."""
        async with self._read() as tx:
            found = await tx.fetchone(
                f"SELECT 1 FROM participations WHERE {_NS} AND next_due_at IS NOT NULL "
                "AND next_due_at<=? LIMIT 1",
                (*_ns(namespace), format_time(now)),
            )
        return found is not None

    async def apply_due(
        self,
        namespace: Namespace,
        now: datetime,
        move: Callable[[Participation], Participation | None],
        *,
        batch: int = 100,
    ) -> Moved:
        """Move up to `batch` participations whose step is due by `now`, under the namespace's
        lock, so concurrent catch-ups (other requests, other processes) apply each step once.

        `move` returns the participation after its due steps, or None to stop the autopilot for
        it (its `next_due_at` is cleared).
        """
        async with self._tx(lock=_lock("autopilot", namespace)) as tx:
            rows = await tx.fetchall(
                f"SELECT {_COLUMNS}, version, id FROM participations WHERE {_NS} "
                "AND next_due_at IS NOT NULL AND next_due_at<=? ORDER BY next_due_at LIMIT ?"
                + self.row_lock,
                (*_ns(namespace), format_time(now), batch),
            )
            for found in rows:
                moved = move(_participation(found))
                if moved is None:
                    await tx.execute(
                        "UPDATE participations SET next_due_at=NULL WHERE id=?", (found[3],)
                    )
                    continue
                await self._rewrite(tx, self.row(moved, version=found[2]))
        return Moved(len(rows), len(rows) == batch)

    async def load_rows(
        self,
        rows: Iterable[Row],
        *,
        batch: int = 50,
        namespace: Namespace | None = None,
        admit: Admit | None = None,
    ) -> int:
        """Insert rows in the stored form (`row`), `batch` a transaction: a world's bulk path;
        returns how many were inserted.

        Small transactions keep the database's writers (SQLite has one) free for other
        requests between batches. Into one `namespace` (a world load through the API) each
        batch checks in its transaction that the account was not deleted (`AccountGone`) and
        that `admit` lets the namespace hold the batch (`NamespaceFull`, given what it holds),
        and skips a row that collides with one created meanwhile. Without a namespace (`serve
        --world` before it listens) an id that exists is an error.
        """
        count = 0
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                count += await self._insert_rows(chunk, namespace, admit)
                chunk = []
                await anyio.sleep(0)  # other requests go first between batches
        if chunk:
            count += await self._insert_rows(chunk, namespace, admit)
        return count

    async def bulk_load(self, rows: Iterable[Row]) -> int:
        """Insert many rows when nothing else is running (`serve --world` before it listens):
        in transactions of 10,000 rows. An id that exists is an error."""
        return await self.load_rows(rows, batch=10_000)

    async def _insert_rows(
        self, rows: list[Row], namespace: Namespace | None = None, admit: Admit | None = None
    ) -> int:
        rows.sort()  # in id order the primary key index grows at its end
        async with self._tx() as tx:
            if namespace is None:
                await tx.executemany(INSERT_ROW, rows)
                return len(rows)
            await self._alive(tx, namespace.account_id)
            before = await self._held(tx, namespace)
            # Admitted when the batch's last row could be added to what the namespace holds.
            if admit is not None and not admit(before + len(rows) - 1):
                raise NamespaceFull(before)
            await tx.executemany(f"{INSERT_ROW} ON CONFLICT DO NOTHING", rows)
            return await self._held(tx, namespace) - before

    async def _held(self, tx: Tx, namespace: Namespace) -> int:
        """How many participations the namespace holds (its counter row, locked till the end of
        the transaction where readers do not take turns on their own)."""
        if self.row_lock:
            # The counter row must exist to be locked (FOR UPDATE) before it is read, so
            # concurrent writers take turns. SQLite has one writer.
            await tx.execute(
                "INSERT INTO sandbox_counts (account_id, live_mode, participations) "
                "VALUES (?, ?, 0) ON CONFLICT (account_id, live_mode) DO NOTHING",
                _ns(namespace),
            )
        held = await tx.fetchone(
            f"SELECT participations FROM sandbox_counts WHERE {_NS}" + self.row_lock,
            _ns(namespace),
        )
        return 0 if held is None else int(held[0])

    async def _alive(self, tx: Tx, account_id: str) -> None:
        """`AccountGone` unless the account may be written to, and it stays so until the
        transaction ends: a deletion waits for it (PostgreSQL: the account's row is share-locked;
        SQLite: one writer), and a write after a deletion began finds the deleted account."""
        if self.share_lock:
            kept = await tx.fetchone(
                "SELECT 1 FROM sandbox_accounts WHERE account_id=?" + self.share_lock,
                (account_id,),
            )
            if kept is not None:  # kept, and locked: its deletion has not begun, and waits
                return
        # No row (a configured account, or a deleted one): a statement of its own, which sees
        # a deletion that committed while the lock above was waited for.
        gone = await tx.fetchone(
            "SELECT 1 FROM sandbox_deleted_accounts WHERE account_id=?", (account_id,)
        )
        if gone is not None:
            raise AccountGone(account_id)

    async def delete_namespace(self, namespace: Namespace, *, batch: int = 50) -> int:
        """Forget the namespace's participations and the ids its world knew (not its clock), a
        batch a transaction; returns how many participations went."""
        deleted = await self._delete_batches(
            f"SELECT id FROM participations WHERE {_NS} LIMIT ?",
            "DELETE FROM participations WHERE id=?",
            _ns(namespace),
            batch,
        )
        known = await self._delete_batches(
            f"SELECT account_id, live_mode, kind, id FROM sandbox_namespace_catalog WHERE {_NS} "
            "LIMIT ?",
            f"DELETE FROM sandbox_namespace_catalog WHERE {_NS} AND kind=? AND id=?",
            _ns(namespace),
            batch * 4,
        )
        if deleted or known:
            await self.compact()
        return deleted

    async def _delete_batches(
        self, select: str, delete: str, scope: tuple[Any, ...], batch: int
    ) -> int:
        """Delete the rows `select` finds in `scope`, `batch` a transaction, other requests
        going first between them; `delete` takes the values of a row `select` found."""
        deleted = 0
        while True:
            async with self._tx() as tx:
                found = await tx.fetchall(select, (*scope, batch))
                if found:
                    await tx.executemany(delete, found)
            deleted += len(found)
            if len(found) < batch:
                return deleted
            await anyio.sleep(0)

    async def compact(self) -> None:
        """Give the space of deleted rows back where the engine needs to be asked."""

    async def reset(self) -> None:
        """Forget every participation and every namespace's state (tests, `:memory:`)."""
        async with self._tx() as tx:
            for table in (
                "participations", "sandbox_counts", "sandbox_clocks", "sandbox_rate_buckets"
            ):
                await tx.execute(f"DELETE FROM {table}")

    # -- participations: reads -------------------------------------------------------------------

    async def get(self, namespace: Namespace, participation_id: str) -> Participation:
        return _participation(await self._get_row(namespace, participation_id))

    async def get_json(self, namespace: Namespace, participation_id: str) -> str:
        """The participation's API object as its stored JSON text (reads pass it through)."""
        return str((await self._get_row(namespace, participation_id))[0])

    async def _get_row(self, namespace: Namespace, participation_id: str) -> Row:
        async with self._read() as tx:
            row = await tx.fetchone(
                f"SELECT {_COLUMNS} FROM participations WHERE id=? AND {_NS}",
                (participation_id, *_ns(namespace)),
            )
        if row is None:
            raise ParticipationNotFound(namespace, participation_id)
        return row

    async def list_json(
        self,
        namespace: Namespace,
        *,
        limit: int = 30,
        starting_after: str | None = None,
        ending_before: str | None = None,
        device_id: str | None = None,
    ) -> Page:
        """A page newest first by (time_created, id), each item as its stored JSON text, and
        `has_more`; keyset cursors keep it stable under inserts."""
        query = PageQuery(limit, starting_after, ending_before, device_id)
        cursor_id = _cursor(query)
        async with self._read() as tx:
            if cursor_id is not None:
                found = await tx.fetchone(
                    f"SELECT 1 FROM participations WHERE id=? AND {_NS}",
                    (cursor_id, *_ns(namespace)),
                )
                if found is None:
                    name = "starting_after" if starting_after is not None else "ending_before"
                    raise UnknownCursor(name, cursor_id)
            sql, args = _page_sql(namespace, query)
            rows = await tx.fetchall(sql, args)
        return _page(query, [row[0] for row in rows])

    async def count(self, namespace: Namespace | None = None) -> int:
        async with self._read() as tx:
            if namespace is None:
                found = await tx.fetchone("SELECT COUNT(*) FROM participations")
            else:
                found = await tx.fetchone(
                    f"SELECT COUNT(*) FROM participations WHERE {_NS}", _ns(namespace)
                )
        return int(found[0]) if found else 0

    async def participations(self) -> AsyncIterator[Participation]:
        """Every participation of every namespace, oldest first (tests and tools)."""
        async with self._read() as tx:
            rows = await tx.fetchall(
                f"SELECT {_COLUMNS} FROM participations ORDER BY time_created, id"
            )
        for row in rows:
            yield _participation(row)

    # -- sandbox clocks --------------------------------------------------------------------------

    async def clock_state(self, namespace: Namespace) -> ClockState | None:
        """The namespace's stored clock, or None while it follows real time untouched."""
        async with self._read() as tx:
            row = await tx.fetchone(
                f"SELECT offset_us, frozen_at, autopilot FROM sandbox_clocks WHERE {_NS}",
                _ns(namespace),
            )
        return None if row is None else _clock_state(row)

    async def namespace_state(
        self,
        namespace: Namespace,
        participation_id: str | None = None,
        page: PageQuery | None = None,
    ) -> NamespaceState:
        """What every request of the namespace needs first, in one read: its stored clock
        (None: real time, untouched), its earliest due autopilot step (formatted as
        `next_due_at`, or None), whether fault rules wait for it, and, when asked, one
        participation's stored JSON (None: no such participation in the namespace) or one page
        (None: its cursor is not a participation of the namespace), so a retrieve or a list
        is one round trip (a page with no item takes two)."""
        # The earliest due step is the first entry of `participations_due`, read as such: as
        # MIN(), PostgreSQL's planner may aggregate every due row of the namespace (thousands
        # after a world load) when its statistics are stale.
        due_and_faults = (
            "(SELECT next_due_at FROM participations WHERE account_id=? AND live_mode=? "
            "AND next_due_at IS NOT NULL ORDER BY next_due_at LIMIT 1), "
            "EXISTS (SELECT 1 FROM sandbox_faults WHERE account_id=? AND live_mode=?)"
        )
        if page is not None and not self.page_beside_state:
            state = await self.namespace_state(namespace)
            try:
                return state._replace(page=await self.list_json(namespace, **page._asdict()))
            except UnknownCursor:
                return state  # no page (the list says why)
        if page is not None:
            # The page's own statement, the state beside each item (read once: the columns do
            # not depend on the row); no item: the state alone, below.
            clock = "(SELECT {} FROM sandbox_clocks WHERE account_id=? AND live_mode=?)"
            columns = ", ".join(
                ["NULL", due_and_faults]
                + [clock.format(name) for name in ("offset_us", "frozen_at", "autopilot")]
                + ["body"]
            )
            sql, page_args = _page_sql(namespace, page, columns=columns)
            async with self._read() as tx:
                rows = await tx.fetchall(sql, [*(_ns(namespace) * 5), *page_args])
            if rows:
                state = _namespace_state(rows[0])
                return state._replace(page=_page(page, [row[6] for row in rows]))
            state = await self.namespace_state(namespace)
            cursor = _cursor(page)
            if cursor is not None and not await self._holds(namespace, cursor):
                return state  # an unknown cursor: no page (the list says why)
            return state._replace(page=([], False))
        args: list[Any] = [*_ns(namespace), *_ns(namespace), *_ns(namespace)]
        body = "NULL"
        if participation_id is not None:
            body = f"(SELECT body FROM participations WHERE id=? AND {_NS})"
            args = [participation_id, *_ns(namespace), *args]
        async with self._read() as tx:
            row = await tx.fetchone(
                f"SELECT {body}, {due_and_faults}, c.offset_us, c.frozen_at, c.autopilot "
                "FROM (SELECT 1 AS one) AS o "
                "LEFT JOIN sandbox_clocks c ON c.account_id=? AND c.live_mode=?",
                args,
            )
        assert row is not None
        return _namespace_state(row)

    async def _holds(self, namespace: Namespace, participation_id: str) -> bool:
        async with self._read() as tx:
            found = await tx.fetchone(
                f"SELECT 1 FROM participations WHERE id=? AND {_NS}",
                (participation_id, *_ns(namespace)),
            )
        return found is not None

    async def save_clock_state(self, namespace: Namespace, state: ClockState | None) -> None:
        """Store the namespace's clock (None: forget it, back to real time)."""
        async with self._tx() as tx:
            await tx.execute(f"DELETE FROM sandbox_clocks WHERE {_NS}", _ns(namespace))
            if state is None:
                return
            await self._alive(tx, namespace.account_id)
            await tx.execute(
                "INSERT INTO sandbox_clocks (account_id, live_mode, offset_us, frozen_at, "
                "autopilot) VALUES (?, ?, ?, ?, ?)",
                (
                    *_ns(namespace),
                    state.offset // timedelta(microseconds=1),
                    None if state.frozen_at is None else state.frozen_at.isoformat(),
                    int(state.autopilot),
                ),
            )

    # -- rate limits -----------------------------------------------------------------------------

    async def update_rate_bucket(
        self, namespace: Namespace, step: Callable[[Bucket | None], tuple[Bucket, T]]
    ) -> T:
        """Replace the namespace's rate-limit bucket by what `step` makes of it (None: none kept
        yet), in one transaction under the namespace's lock; returns `step`'s answer."""
        async with self._tx(lock=_lock("rate", namespace)) as tx:
            row = await tx.fetchone(
                f"SELECT tokens, stamp FROM sandbox_rate_buckets WHERE {_NS}", _ns(namespace)
            )
            bucket, answer = step(None if row is None else Bucket(float(row[0]), float(row[1])))
            await tx.execute(f"DELETE FROM sandbox_rate_buckets WHERE {_NS}", _ns(namespace))
            await self._alive(tx, namespace.account_id)
            await tx.execute(
                "INSERT INTO sandbox_rate_buckets (account_id, live_mode, tokens, stamp) "
                "VALUES (?, ?, ?, ?)",
                (*_ns(namespace), bucket.tokens, bucket.stamp),
            )
        return answer

    # -- fault rules -----------------------------------------------------------------------------

    async def add_fault(self, namespace: Namespace, rule: FaultRule, *, admit: Admit) -> bool:
        """Keep a rule after the namespace's others; False when `admit` refuses given how many
        it has."""
        async with self._tx(lock=_lock("faults", namespace)) as tx:
            row = await tx.fetchone(
                f"SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM sandbox_faults WHERE {_NS}",
                _ns(namespace),
            )
            assert row is not None
            if not admit(int(row[0])):
                return False
            await self._alive(tx, namespace.account_id)
            await tx.execute(
                f"INSERT INTO sandbox_faults ({_FAULT_COLUMNS}, account_id, live_mode, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*_fault_row(rule), *_ns(namespace), int(row[1]) + 1),
            )
        return True

    async def faults(self, namespace: Namespace) -> list[FaultRule]:
        """The namespace's rules still to fire, in the order they were set."""
        async with self._read() as tx:
            rows = await tx.fetchall(
                f"SELECT {_FAULT_COLUMNS} FROM sandbox_faults WHERE {_NS} ORDER BY seq",
                _ns(namespace),
            )
        return [_fault_of(row) for row in rows]

    async def take_fault(self, namespace: Namespace, operation: str) -> FaultRule | None:
        """The first rule for `operation` (or "*"), one of its `remaining` calls used up."""
        where = f"{_NS} AND operation IN (?, '*')"
        args = (*_ns(namespace), operation)
        async with self._read() as tx:  # the common case: no rule, one indexed read
            if await tx.fetchone(f"SELECT 1 FROM sandbox_faults WHERE {where}", args) is None:
                return None
        async with self._tx(lock=_lock("faults", namespace)) as tx:
            row = await tx.fetchone(
                f"SELECT {_FAULT_COLUMNS} FROM sandbox_faults WHERE {where} ORDER BY seq "
                "LIMIT 1",
                args,
            )
            if row is None:  # another request took the last one
                return None
            if int(row[7]) <= 1:
                await tx.execute("DELETE FROM sandbox_faults WHERE id=?", (row[0],))
            else:
                await tx.execute(
                    "UPDATE sandbox_faults SET remaining=remaining-1 WHERE id=?", (row[0],)
                )
        return _fault_of(row, used=1)

    async def delete_faults(self, namespace: Namespace) -> int:
        async with self._tx() as tx:
            return await tx.execute(f"DELETE FROM sandbox_faults WHERE {_NS}", _ns(namespace))

    # -- the catalogue of known ids (loaded worlds) ----------------------------------------------

    async def catalog_put(
        self, kind: str, entries: Mapping[str, str], namespace: Namespace | None = None
    ) -> None:
        """Remember what a world knows about ids of `kind` (its JSON data per id): for every
        namespace (the start-up world), or for `namespace` alone (a world it loaded)."""
        items = list(entries.items())
        if namespace is None:
            sql = (
                "INSERT INTO sandbox_catalog (kind, id, data) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data"
            )
            prefix: tuple[Any, ...] = ()
        else:
            sql = (
                "INSERT INTO sandbox_namespace_catalog (account_id, live_mode, kind, id, data) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, live_mode, kind, id) "
                "DO UPDATE SET data = excluded.data"
            )
            prefix = _ns(namespace)
        for start in range(0, len(items), 200):
            async with self._tx() as tx:
                if namespace is not None:
                    await self._alive(tx, namespace.account_id)
                await tx.executemany(
                    sql, [(*prefix, kind, key, data) for key, data in items[start : start + 200]]
                )
            await anyio.sleep(0)

    async def catalog_get(
        self, keys: Sequence[tuple[str, str]], namespace: Namespace | None = None
    ) -> dict[tuple[str, str], str]:
        """The data kept for each (kind, id) that is known, in one query: the namespace's own
        world first, then the start-up world's."""
        if not keys:
            return {}
        where = " OR ".join(["(kind=? AND id=?)"] * len(keys))
        args: list[Any] = [part for key in keys for part in key]
        sql = f"SELECT kind, id, data, 1 FROM sandbox_catalog WHERE {where}"
        if namespace is not None:
            sql += (
                f" UNION ALL SELECT kind, id, data, 0 FROM sandbox_namespace_catalog "
                f"WHERE {_NS} AND ({where})"
            )
            args += [*_ns(namespace), *args]
        async with self._read() as tx:
            rows = await tx.fetchall(sql, args)
        found: dict[tuple[str, str], str] = {}
        for kind, key, data, _ in sorted(rows, key=lambda r: -int(r[3])):  # own last: it wins
            found[(str(kind), str(key))] = str(data)
        return found

    # -- settings kept with the data -------------------------------------------------------------

    async def signing_secret(self) -> bytes:
        """The JWT signing secret of this data: 32 random bytes, made once, kept with the data.

        Tokens then survive restarts and work on every process sharing the data, and a token
        of another data file never verifies here.
        """
        return bytes.fromhex(await self.meta("jwt_signing_secret", lambda: secrets.token_hex(32)))

    async def meta(self, key: str, default: Callable[[], str]) -> str:
        """The value kept under `key` with the data, created from `default()` the first time
        (by exactly one process when several start at once)."""
        async with self._read() as tx:
            row = await tx.fetchone("SELECT value FROM sandbox_meta WHERE key=?", (key,))
        if row is not None:
            return str(row[0])
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO sandbox_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, default()),
            )
            row = await tx.fetchone("SELECT value FROM sandbox_meta WHERE key=?", (key,))
        assert row is not None
        return str(row[0])

    # -- accounts made on demand -----------------------------------------------------------------
    # The persistence of POST/DELETE /_sandbox/accounts. Key generation, key checks and
    # permissions are mock_server/accounts.py's.

    async def create_account(self, record: AccountRecord, *, admit: Admit) -> bool:
        """Keep a new account, unless `admit` refuses given how many are kept (False then).

        The count and the insert are one transaction under one lock, so concurrent creates
        (other processes too) never pass the cap.
        """
        async with self._tx(lock="accounts") as tx:
            kept = await tx.fetchone("SELECT COUNT(*) FROM sandbox_accounts")
            if not admit(0 if kept is None else int(kept[0])):
                return False
            await tx.execute(
                "INSERT INTO sandbox_accounts "
                "(account_id, test_key_sha256, live_key_sha256, time_created) VALUES (?, ?, ?, ?)",
                (
                    record.account_id,
                    record.test_key_sha256,
                    record.live_key_sha256,
                    record.time_created,
                ),
            )
        return True

    async def delete_account(self, account_id: str, now: str) -> AccountDeletion | None:
        """Forget the account and everything in it: participations of both modes, the ids their
        worlds knew, clocks, rate-limit buckets, fault rules. None when no such account is kept
        and no deletion of it is unfinished.

        The account goes first, in one transaction with a record of its deletion, so its keys
        and tokens stop working at once and no write into it can land afterwards (`_alive`);
        its participations follow in batches. A deletion interrupted (a crash) is finished by
        the next call: the record says it is unfinished until the last batch is gone.
        """
        async with self._tx() as tx:
            gone = await tx.execute(
                "DELETE FROM sandbox_accounts WHERE account_id=?", (account_id,)
            )
            if gone:
                await tx.execute(
                    "INSERT INTO sandbox_deleted_accounts (account_id, deleted_at, finished) "
                    "VALUES (?, ?, 0) ON CONFLICT (account_id) DO UPDATE SET finished=0",
                    (account_id, now),
                )
            else:
                found = await tx.fetchone(
                    "SELECT finished FROM sandbox_deleted_accounts WHERE account_id=?",
                    (account_id,),
                )
                if found is None or int(found[0]):
                    return None
            clocks = await tx.execute(
                "DELETE FROM sandbox_clocks WHERE account_id=?", (account_id,)
            )
            for table in ("sandbox_rate_buckets", "sandbox_faults"):
                await tx.execute(f"DELETE FROM {table} WHERE account_id=?", (account_id,))
        test = await self.delete_namespace(Namespace(account_id, False))
        live = await self.delete_namespace(Namespace(account_id, True))
        async with self._tx() as tx:
            await tx.execute("DELETE FROM sandbox_counts WHERE account_id=?", (account_id,))
            await tx.execute(
                "UPDATE sandbox_deleted_accounts SET finished=1 WHERE account_id=?",
                (account_id,),
            )
        return AccountDeletion(test, live, clocks)

    async def unfinished_deletions(self) -> list[str]:
        """Accounts whose deletion began and was interrupted (a crash), oldest first."""
        async with self._read() as tx:
            rows = await tx.fetchall(
                "SELECT account_id FROM sandbox_deleted_accounts WHERE finished=0 "
                "ORDER BY deleted_at"
            )
        return [str(r[0]) for r in rows]

    async def forget_deletions(self, before: str) -> int:
        """Drop the records of deletions finished before `before` (no request of theirs can
        still be running)."""
        async with self._tx() as tx:
            return await tx.execute(
                "DELETE FROM sandbox_deleted_accounts WHERE finished=1 AND deleted_at<?",
                (before,),
            )

    # -- heavy work: leases (mock_server/admission.py decides) ----------------------------------

    async def take_job(
        self,
        scope: str,
        job: Job,
        holder: str,
        *,
        now: float,
        ttl: float,
        replace: str | None = None,
    ) -> Job | None:
        """Take the lease on `scope` for `holder` until `now + ttl` (None), unless another
        holder's lease runs (its Job). An expired lease (its holder crashed), or the one of
        `replace` (a holder known to be gone), is taken over. One statement: no transaction
        round trips on the path of every clock move."""
        async with self._single() as tx:
            taken = await tx.execute(
                "INSERT INTO sandbox_jobs (scope, kind, started, holder, expires) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE SET kind=excluded.kind, "
                "started=excluded.started, holder=excluded.holder, expires=excluded.expires "
                "WHERE sandbox_jobs.expires<? OR sandbox_jobs.holder=?",
                (scope, job.kind, job.started, holder, now + ttl, now, replace),
            )
            if taken:
                return None
            row = await tx.fetchone(
                "SELECT kind, started, holder FROM sandbox_jobs WHERE scope=?", (scope,)
            )
        return job if row is None else Job(str(row[0]), str(row[1]), str(row[2]))

    async def renew_job(self, scope: str, holder: str, expires: float) -> bool:
        """Extend `holder`'s lease; False when it has lost it (it expired and was taken)."""
        async with self._tx() as tx:
            return bool(
                await tx.execute(
                    "UPDATE sandbox_jobs SET expires=? WHERE scope=? AND holder=?",
                    (expires, scope, holder),
                )
            )

    async def release_job(self, scope: str, holder: str, *, now: float) -> None:
        """Give the lease back, and forget every lease that expired before `now` (their
        holders are gone), in one statement."""
        async with self._single() as tx:
            await tx.execute(
                "DELETE FROM sandbox_jobs WHERE (scope=? AND holder=?) OR expires<?",
                (scope, holder, now),
            )

    async def find_account_keys(self, account_id: str) -> AccountRecord | None:
        """The kept account (its key digests), or None."""
        async with self._read() as tx:
            row = await tx.fetchone(
                "SELECT account_id, test_key_sha256, live_key_sha256, time_created "
                "FROM sandbox_accounts WHERE account_id=?",
                (account_id,),
            )
        return None if row is None else AccountRecord(*row)

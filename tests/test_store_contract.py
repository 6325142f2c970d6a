"""The store contract: one suite, every engine (SQLite in memory, a SQLite file, PostgreSQL)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from tests.postgres_server import PostgresServer
from vpp_sandbox.mock_server.autopilot import catch_up
from vpp_sandbox.mock_server.catalog import derived_programme, derived_provider
from vpp_sandbox.mock_server.clock import ClockState, Namespace
from vpp_sandbox.mock_server.lifecycle import (
    Participation,
    Record,
    State,
    Status,
    apply_update,
    new_participation,
)
from vpp_sandbox.mock_server.ratelimit import take
from vpp_sandbox.mock_server.store import (
    AccountGone,
    AccountRecord,
    DuplicateParticipation,
    Job,
    NamespaceFull,
    NamespaceState,
    PageQuery,
    ParticipationNotFound,
    Store,
    UnknownCursor,
)
from vpp_sandbox.mock_server.stores import open_store

pytestmark = pytest.mark.anyio
START = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite-memory", "sqlite-file", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    if request.param == "sqlite-memory":
        db = ":memory:"
    elif request.param == "sqlite-file":
        db = str(tmp_path / "store.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        db = server.database()
    opened = open_store(db)
    try:
        yield opened
    finally:
        await opened.close()


def below(limit: int) -> Any:
    """`admit` for a namespace of at most `limit` participations."""
    return lambda held: held < limit


def ns() -> Namespace:
    return Namespace("acc_" + secrets.token_hex(12), False)


def make(
    namespace: Namespace,
    *,
    device: str | None = None,
    programme: str = "vpr_" + "1" * 24,
    at: datetime = START,
    pid: str | None = None,
) -> Participation:
    provider = derived_provider("prv_" + "1" * 24)
    return new_participation(
        id=pid or "vpp_" + secrets.token_hex(12),
        account_id=namespace.account_id,
        live_mode=namespace.live_mode,
        device_id=device or "dev_" + secrets.token_hex(12),
        location_id="loc_" + "2" * 24,
        reference_id=None,
        provider=provider,
        programme=derived_programme(programme, provider),
        now=at,
    )


def to(state: State, at: datetime) -> object:
    return lambda p: apply_update(p, [Record(state, Status.IN_PROGRESS, occurred_at=at)], at)


async def test_insert_get_and_the_stored_json_round_trip(store: Store) -> None:
    space = ns()
    p = make(space)
    text = await store.insert(p)
    assert orjson.loads(text) == p.to_json()
    assert await store.get_json(space, p.id) == text
    assert await store.get(space, p.id) == p
    with pytest.raises(ParticipationNotFound):
        await store.get_json(Namespace(space.account_id, True), p.id)
    with pytest.raises(ParticipationNotFound):
        await store.get_json(ns(), p.id)
    assert await store.count(space) == 1


async def test_one_open_participation_per_device_and_programme(store: Store) -> None:
    space = ns()
    first = make(space, device="dev_" + "3" * 24)
    await store.insert(first)
    with pytest.raises(DuplicateParticipation) as caught:
        await store.insert(make(space, device="dev_" + "3" * 24))
    assert caught.value.existing_id == first.id
    # Another programme, another namespace: fine. A finished one frees the device.
    await store.insert(make(space, device="dev_" + "3" * 24, programme="vpr_" + "9" * 24))
    await store.insert(make(ns(), device="dev_" + "3" * 24))
    await store.update(space, first.id, to(State.FAILED, START))  # type: ignore[arg-type]
    await store.insert(make(space, device="dev_" + "3" * 24))


async def test_a_namespace_holds_at_most_its_limit_whatever_wrote_it(store: Store) -> None:
    space, other = ns(), ns()
    for _ in range(3):
        await store.insert(make(space), admit=below(3))
    with pytest.raises(NamespaceFull):
        await store.insert(make(space), admit=below(3))
    finished = make(space)  # a finished participation is stored, so it counts too
    with pytest.raises(NamespaceFull):
        await store.insert(to(State.FAILED, START)(finished), admit=below(3))  # type: ignore[operator]
    assert await store.count(space) == 3
    await store.insert(make(other), admit=below(3))  # another namespace has its own count
    # Rows loaded in bulk and rows deleted are counted as well.
    assert await store.load_rows([store.row(make(other)) for _ in range(24)], batch=10) == 24
    with pytest.raises(NamespaceFull):
        await store.insert(make(other), admit=below(25))
    await store.insert(make(other), admit=below(26))
    assert await store.delete_namespace(space) == 3
    for _ in range(3):
        await store.insert(make(space), admit=below(3))


async def test_concurrent_creates_never_pass_the_limit(store: Store) -> None:
    space = ns()
    made: list[str] = []
    refused: list[NamespaceFull] = []

    async def create() -> None:
        try:
            made.append(await store.insert(make(space), admit=below(5)))
        except NamespaceFull as exc:
            refused.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(12):
            group.start_soon(create)
    assert (len(made), len(refused)) == (5, 7)
    assert await store.count(space) == 5


async def test_update_applies_the_change_atomically_and_refuses_unknown_ids(store: Store) -> None:
    space = ns()
    p = make(space)
    await store.insert(p)
    later = START + timedelta(minutes=1)
    text = await store.update(space, p.id, to(State.AWAITING_CUSTOMER_CONSENT, later))  # type: ignore[arg-type]
    moved = await store.get(space, p.id)
    assert moved.current_state is State.AWAITING_CUSTOMER_CONSENT
    assert orjson.loads(text) == moved.to_json()

    def refuse(current: Participation) -> Participation:
        raise ValueError("no")

    with pytest.raises(ValueError):
        await store.update(space, p.id, refuse)
    assert await store.get(space, p.id) == moved
    with pytest.raises(ParticipationNotFound):
        await store.update(ns(), p.id, lambda current: current)


async def test_concurrent_updates_of_one_participation_never_lose_one(store: Store) -> None:
    space = ns()
    p = make(space)
    await store.insert(p)
    path = [State.AWAITING_CUSTOMER_CONSENT, State.AWAITING_DEVICE_TELEMETRY,
            State.CHECKING_ELIGIBILITY, State.AWAITING_REGISTRATION, State.REGISTERED]

    def next_legal(current: Participation) -> Participation:
        state = path[path.index(current.current_state) + 1] if current.current_state in path \
            else path[0]
        return apply_update(current, [Record(state, Status.IN_PROGRESS)], START)

    async with anyio.create_task_group() as tasks:
        for _ in range(len(path)):
            tasks.start_soon(store.update, space, p.id, next_legal)
    final = await store.get(space, p.id)
    assert [e.state for e in final.history][1:] == path


async def test_list_pages_newest_first_with_both_cursors_and_a_device_filter(
    store: Store,
) -> None:
    space = ns()
    device = "dev_" + "4" * 24
    made = [make(space, at=START + timedelta(seconds=i // 2)) for i in range(7)]
    made.append(make(space, device=device, at=START + timedelta(seconds=1)))
    for p in made:
        await store.insert(p)
    order = sorted(made, key=lambda p: (p.time_created, p.id), reverse=True)
    ids = [p.id for p in order]
    seen: list[str] = []
    cursor = None
    while True:
        page, more = await store.list_json(space, limit=3, starting_after=cursor)
        seen += [orjson.loads(t)["id"] for t in page]
        if not more:
            break
        cursor = seen[-1]
    assert seen == ids
    back, more = await store.list_json(space, limit=3, ending_before=ids[5])
    assert [orjson.loads(t)["id"] for t in back] == ids[2:5] and more
    only, more = await store.list_json(space, device_id=device)
    assert [orjson.loads(t)["id"] for t in only] == [made[-1].id] and not more
    with pytest.raises(UnknownCursor):
        await store.list_json(space, starting_after="vpp_" + "0" * 24)
    assert await store.list_json(ns()) == ([], False)


async def test_a_due_step_is_applied_once_by_concurrent_catch_ups(store: Store) -> None:
    space = ns()
    for _ in range(7):
        await store.insert(make(space))
    later = START + timedelta(days=8)
    moved = [0] * 6

    async def one(i: int) -> None:
        moved[i] = await catch_up(store, space, later)

    async with anyio.create_task_group() as tasks:
        for i in range(len(moved)):
            tasks.start_soon(one, i)
    assert sum(moved) == 7  # each participation moved by exactly one of them
    page, _ = await store.list_json(space)
    for text in page:
        doc = orjson.loads(text)
        states = [e["state"] for e in doc["participation_state"] if e["status"] != "PENDING"]
        assert states[-1] == "ACTIVE" and len(states) == len(set(states))
    assert not await store.has_due(space, later)


async def test_delete_namespace_and_bulk_load_touch_only_that_namespace(store: Store) -> None:
    mine, other = ns(), ns()
    rows = [store.row(make(mine)) for _ in range(25)]
    assert await store.load_rows(rows, batch=10) == 25
    await store.insert(make(other))
    assert await store.delete_namespace(mine, batch=7) == 25
    assert await store.count(mine) == 0 and await store.count(other) == 1


async def test_clocks_rate_buckets_catalogue_and_meta_are_shared_state(store: Store) -> None:
    space = ns()
    assert await store.clock_state(space) is None
    state = ClockState(offset=timedelta(days=3, microseconds=5), frozen_at=START, autopilot=False)
    await store.save_clock_state(space, state)
    assert await store.clock_state(space) == state
    await store.save_clock_state(space, None)
    assert await store.clock_state(space) is None

    def take_at(now: float) -> Any:
        return store.update_rate_bucket(space, lambda bucket: take(bucket, 2.0, now))

    assert [await take_at(100.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert await take_at(100.5) == 0.0

    await store.catalog_put("provider", {"prv_a": '["A", "https://a"]'})
    await store.catalog_put("provider", {"prv_a": '["A2", "https://a"]'})
    found = await store.catalog_get([("provider", "prv_a"), ("provider", "prv_b")])
    assert found == {("provider", "prv_a"): '["A2", "https://a"]'}
    # A namespace's own world wins there, and only there; its reset forgets it.
    await store.catalog_put("provider", {"prv_a": '["Own", "https://o"]'}, space)
    keys = [("provider", "prv_a")]
    assert await store.catalog_get(keys, space) == {keys[0]: '["Own", "https://o"]'}
    assert await store.catalog_get(keys, ns()) == {keys[0]: '["A2", "https://a"]'}
    await store.delete_namespace(space)
    assert await store.catalog_get(keys, space) == {keys[0]: '["A2", "https://a"]'}

    first = await store.meta("secret", lambda: "one")
    assert first == "one" and await store.meta("secret", lambda: "two") == "one"


async def test_the_namespace_state_is_the_clock_and_the_earliest_due_step(store: Store) -> None:
    space = ns()
    assert await store.namespace_state(space) == NamespaceState(None, None)
    first, second = make(space, at=START), make(space, at=START + timedelta(hours=1))
    await store.insert(second)
    await store.insert(first)
    state = ClockState(offset=timedelta(days=1), autopilot=False)
    await store.save_clock_state(space, state)
    clock, earliest, *_ = await store.namespace_state(space)
    assert clock == state
    assert earliest == store.row(first)[11] < store.row(second)[11]  # the sooner one
    assert await store.namespace_state(ns()) == NamespaceState(None, None)


@pytest.mark.parametrize("beside", [True, False], ids=["one-statement", "two-statements"])
async def test_a_page_read_with_the_namespace_state_is_the_page_listed(
    store: Store, beside: bool
) -> None:
    """A list's one round trip (`namespace_state(page=...)`) reads the page `list_json` reads,
    for every kind of query; a cursor the namespace does not hold reads no page. Each store
    reads it both ways (its own is one of them)."""
    store.page_beside_state = beside
    space, other = ns(), ns()
    device = "dev_" + "7" * 24
    made = [make(space, at=START + timedelta(minutes=i), device=device if i % 3 else None,
                 programme=f"vpr_{i:024x}") for i in range(7)]
    for p in made:
        await store.insert(p)
    await store.insert(make(other, at=START))
    ids = [p.id for p in made]
    queries = [
        PageQuery(), PageQuery(limit=3), PageQuery(limit=7), PageQuery(limit=6),
        PageQuery(limit=2, starting_after=ids[5]), PageQuery(limit=2, ending_before=ids[1]),
        PageQuery(limit=10, ending_before=ids[0]), PageQuery(limit=1, starting_after=ids[0]),
        PageQuery(device_id=device), PageQuery(limit=2, device_id=device, starting_after=ids[5]),
        PageQuery(device_id="dev_" + "8" * 24),
    ]
    for query in queries:
        listed = await store.list_json(space, **query._asdict())
        state = await store.namespace_state(space, page=query)
        assert state.page == listed, query
        assert state == (await store.namespace_state(space))._replace(page=listed)
    assert (await store.namespace_state(other, page=PageQuery(starting_after=ids[0]))).page is None
    newest = [await store.get_json(space, pid) for pid in (ids[6], ids[5])]
    assert (await store.namespace_state(space, page=PageQuery(limit=2))).page == (newest, True)


# -- heavy work and deleted accounts (issue 18) ----------------------------------------------------


async def test_a_lease_is_held_once_and_an_expired_one_is_taken_over(store: Store) -> None:
    scope, job = "ns:" + secrets.token_hex(6), Job("world load", "2026-11-02T09:00:00Z")
    assert await store.take_job(scope, job, "one", now=100.0, ttl=30.0) is None
    other = Job("reset", "2026-11-02T09:00:05Z")
    held_by_one = Job(job.kind, job.started, "one")
    assert await store.take_job(scope, other, "two", now=110.0, ttl=30.0) == held_by_one
    assert await store.renew_job(scope, "one", 150.0)
    assert await store.take_job(scope, other, "two", now=140.0, ttl=30.0) == held_by_one
    # Its holder stopped renewing (a crash): past its expiry another takes it over.
    assert await store.take_job(scope, other, "two", now=151.0, ttl=30.0) is None
    assert not await store.renew_job(scope, "one", 200.0)
    await store.release_job(scope, "one", now=152.0)  # not the holder any more: nothing
    held_by_two = Job(other.kind, other.started, "two")
    assert await store.take_job(scope, job, "three", now=152.0, ttl=30.0) == held_by_two
    # A holder known to be gone (a killed process of this machine) is replaced at once.
    assert await store.take_job(scope, job, "three", now=153.0, ttl=30.0,
                                replace="someone else") == held_by_two
    assert await store.take_job(scope, job, "three", now=153.0, ttl=30.0, replace="two") is None
    await store.release_job(scope, "three", now=153.0)
    assert await store.take_job(scope, job, "four", now=154.0, ttl=30.0) is None
    # A release also forgets the leases that expired meanwhile, whoever held them.
    stale = "ns:" + secrets.token_hex(6)
    assert await store.take_job(stale, job, "five", now=150.0, ttl=1.0) is None
    await store.release_job(scope, "four", now=160.0)
    async with store._read() as tx:
        left = await tx.fetchone("SELECT COUNT(*) FROM sandbox_jobs WHERE scope IN (?, ?)",
                                 (scope, stale))
    assert left is not None and left[0] == 0


async def test_concurrent_takers_get_a_lease_once(store: Store) -> None:
    scope, won = "ns:" + secrets.token_hex(6), []

    async def take(holder: str) -> None:
        if await store.take_job(scope, Job("reset", "t"), holder, now=1.0, ttl=30.0) is None:
            won.append(holder)

    async with anyio.create_task_group() as group:
        for n in range(8):
            group.start_soon(take, f"h{n}")
    assert len(won) == 1


async def _account(store: Store) -> str:
    account_id = "acc_" + secrets.token_hex(12)
    record = AccountRecord(account_id, "a" * 64, "b" * 64, "2026-11-02T09:00:00Z")
    assert await store.create_account(record, admit=lambda kept: True)
    return account_id


async def _remains(store: Store, account_id: str) -> dict[str, int]:
    """Rows of the account left in any table."""
    found = {}
    async with store._read() as tx:
        for table in ("participations", "sandbox_clocks", "sandbox_rate_buckets",
                      "sandbox_faults", "sandbox_counts", "sandbox_namespace_catalog",
                      "sandbox_accounts"):
            row = await tx.fetchone(f"SELECT COUNT(*) FROM {table} WHERE account_id=?",
                                    (account_id,))
            if row and row[0]:
                found[table] = int(row[0])
        row = await tx.fetchone("SELECT COUNT(*) FROM sandbox_jobs WHERE scope LIKE ?",
                                (f"%{account_id}%",))
        if row and row[0]:
            found["sandbox_jobs"] = int(row[0])
    return found


async def test_nothing_can_be_written_into_a_deleted_account(store: Store) -> None:
    account_id = await _account(store)
    space = Namespace(account_id, False)
    await store.insert(make(space))
    await store.save_clock_state(space, ClockState(offset=timedelta(days=1)))
    await store.catalog_put("provider", {"prv_a": '["A", "https://a"]'}, space)
    deleted = await store.delete_account(account_id, "2026-11-02T10:00:00Z")
    assert deleted is not None and deleted.test_participations == 1 and deleted.clocks == 1
    writes = [
        store.insert(make(space)),
        store.load_rows([store.row(make(space))], namespace=space),
        store.save_clock_state(space, ClockState(offset=timedelta(days=2))),
        store.update_rate_bucket(space, lambda bucket: take(bucket, 2.0, 1.0)),
        store.catalog_put("provider", {"prv_b": '["B", "https://b"]'}, space),
    ]
    for write in writes:
        with pytest.raises(AccountGone):
            await write
    assert await _remains(store, account_id) == {}
    # A second DELETE finds nothing to do.
    assert await store.delete_account(account_id, "2026-11-02T10:00:01Z") is None


async def test_an_interrupted_deletion_is_finished_by_the_next_one(store: Store) -> None:
    account_id = await _account(store)
    space = Namespace(account_id, False)
    await store.load_rows([store.row(make(space)) for _ in range(120)], namespace=space)
    deleting = anyio.Event()
    original = store.delete_namespace

    async def stop_after_the_first_batch(namespace: Namespace, *, batch: int = 50) -> int:
        deleted = await original(namespace, batch=50)  # noqa: F841 - one batch is enough
        deleting.set()
        await anyio.sleep_forever()
        raise AssertionError("not reached")

    store.delete_namespace = stop_after_the_first_batch  # type: ignore[method-assign]
    async with anyio.create_task_group() as group:
        group.start_soon(store.delete_account, account_id, "2026-11-02T10:00:00Z")
        await deleting.wait()
        group.cancel_scope.cancel()  # as a crash would stop it
    store.delete_namespace = original  # type: ignore[method-assign]
    assert await store.unfinished_deletions() == [account_id]
    with pytest.raises(AccountGone):  # meanwhile nothing can be written into it
        await store.insert(make(space))
    finished = await store.delete_account(account_id, "2026-11-02T10:00:05Z")
    assert finished is not None
    assert await _remains(store, account_id) == {}
    assert await store.unfinished_deletions() == []


async def test_a_load_is_admitted_batch_by_batch_and_skips_collisions(store: Store) -> None:
    space = ns()
    device = "dev_" + "4" * 24
    await store.insert(make(space, device=device))  # created while the world loads
    world = [store.row(make(space, device=device))] + [store.row(make(space)) for _ in range(9)]
    assert await store.load_rows(world, batch=5, namespace=space, admit=below(20)) == 9
    with pytest.raises(NamespaceFull):  # a batch the namespace cannot hold: none of it
        await store.load_rows([store.row(make(space)) for _ in range(11)], batch=11,
                              namespace=space, admit=below(20))
    assert await store.count(space) == 10


async def test_creates_racing_a_deletion_leave_nothing_behind(store: Store) -> None:
    """Creates on connections of their own while the account is deleted (PostgreSQL: really
    at once; a create that passed its check before the deletion is waited for)."""
    for _ in range(4):
        account_id = await _account(store)
        space = Namespace(account_id, False)
        started = anyio.Event()
        made: list[str] = []
        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(_create_until_gone, store, space, made, started)
            await started.wait()
            assert await store.delete_account(account_id, "2026-11-02T10:00:00Z") is not None
        assert await _remains(store, account_id) == {}, len(made)


async def _create_until_gone(
    store: Store, space: Namespace, made: list[str], started: anyio.Event
) -> None:
    for _ in range(60):
        try:
            made.append(await store.insert(make(space)))
        except AccountGone:
            return
        if len(made) >= 20:
            started.set()
        await anyio.sleep(0)  # SQLite's calls never suspend: let the others in

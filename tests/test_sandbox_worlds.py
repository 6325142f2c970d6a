"""Worlds in the sandbox: `serve --world` loads into an empty store only; POST /_sandbox/world."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests

from tests.fixture_checks import check_participation
from tests.sandbox_client import ACCOUNT_A, ACCOUNT_B, ACCOUNTS, Sandbox
from tests.sandbox_time import START, RealTime, parse, timed_sandbox
from tests.serve_process import served
from tests.stores import memory_store, sync
from vpp_sandbox.cli import build_parser
from vpp_sandbox.fixtures.generator import shift
from vpp_sandbox.fixtures.worlds import build
from vpp_sandbox.mock_server.app import create_app
from vpp_sandbox.mock_server.autopilot import catch_up
from vpp_sandbox.mock_server.catalog import Catalog, derived_programme, derived_provider
from vpp_sandbox.mock_server.clock import Namespace, SandboxClock
from vpp_sandbox.mock_server.lifecycle import format_time, new_participation
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Settings
from vpp_sandbox.mock_server.store import DuplicateParticipation
from vpp_sandbox.mock_server.store_sqlite import SqliteStore
from vpp_sandbox.mock_server.stores import open_store
from vpp_sandbox.mock_server.worlds import (
    IN_PROCESS_MAX,
    BuildFailed,
    WorldJob,
    _messages,
    prepare,
    shifted_row,
    world_rows,
)

DEMO = build("demo")
STORE = memory_store()  # only its row layout is used


def _serve(db: str, world: str = "demo", **settings: object) -> tuple[Sandbox, str]:
    """What `vpp-sandbox serve --world` does before uvicorn starts, in-process."""
    base = Settings(db=db, world=world, **settings)  # type: ignore[arg-type]
    store = open_store(db)
    clock = SandboxClock(store, RealTime())
    catalog = Catalog(store)
    ready, note = sync(prepare(base, store, clock, catalog))
    app = create_app(ready, store, clock=clock, catalog=catalog)
    return Sandbox(ready, store, app, app.test_client()), note


def test_serve_world_loads_every_namespace_shifted_to_the_clock(tmp_path: Path) -> None:
    sb, note = _serve(str(tmp_path / "s.db"))
    assert "44 participations loaded" in note
    assert sync(sb.store.count()) == len(DEMO.participations)
    # World accounts log in beside the default one; each sees its own share, as in the world.
    assert set(DEFAULT_ACCOUNT) <= set(sb.settings.accounts)
    delta = START - DEMO.now
    for account in DEMO.accounts:
        for live in (False, True):
            expected = sorted(
                (p for _, p in DEMO.participations
                 if p.account_id == account.account_id and p.live_mode is live),
                key=lambda p: (p.time_created, p.id),
                reverse=True,
            )
            got = sb.list(account.account_id, live, limit=100).json()["data"]
            assert [p["id"] for p in got] == [p.id for p in expected]
            for doc, p in zip(got, expected, strict=True):
                check_participation(doc, live_mode=live, account_id=account.account_id)
                assert parse(doc["time_created"]) == p.time_created + delta
                assert parse(doc["time_updated"]) <= START
            # Nothing in flight is overdue once loaded.
            assert sync(catch_up(sb.store, Namespace(account.account_id, live), START)) == 0
    sync(sb.store.close())


def test_serve_world_loads_into_an_empty_store_only(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    first, _ = _serve(db)
    me = DEMO.accounts[0].account_id
    pid = first.list(me, limit=1).json()["data"][0]["id"]
    r = first.client.post(
        f"/vpp-participations/{pid}",
        json={"participation_state": [{"state": "FAILED", "status": "IN_PROGRESS"}]},
        headers=first.headers(me),
    )
    assert r.status_code in (200, 409)
    kept = first.get(pid, me).json()
    sync(first.store.close())

    again, note = _serve(db)
    assert "not loaded" in note and "44" in note
    assert sync(again.store.count()) == len(DEMO.participations)
    assert again.get(pid, me).json() == kept
    # The world's other account still logs in after the restart.
    other = DEMO.accounts[1]
    assert again.list(other.account_id).status_code == 200
    sync(again.store.close())


def test_serve_world_from_a_json_file_and_known_ids_take_the_worlds_data(tmp_path: Path) -> None:
    path = tmp_path / "edge.json"
    world = build("edge-cases", seed=3)
    path.write_bytes(world.dumps())
    sb, note = _serve(str(tmp_path / "s.db"), world=str(path))
    assert f"{len(world.participations)} participations loaded" in note
    programme = world.programmes[0]
    provider = next(p for p in world.providers if p.id == programme.provider_id)
    me = world.accounts[0].account_id
    created = sb.create(me, provider_id=provider.id, programme_id=programme.id)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["programme"]["programme_display_name"] == programme.display_name
    assert body["provider"]["provider_display_name"] == provider.display_name
    sync(sb.store.close())


def test_the_cli_takes_world_seed_and_size() -> None:
    args = build_parser().parse_args(["serve", "--world", "load", "--seed", "3", "--size", "50"])
    assert (args.world, args.seed, args.size) == ("load", 3, 50)


def test_post_world_replaces_this_namespace_only_and_maps_other_accounts() -> None:
    ts = timed_sandbox()
    ts.advance("P3D")
    theirs = ts.sb.create(account_id=ACCOUNT_B).json()
    ts.sb.create()
    r = ts.control("world", world="demo")
    assert r.status_code == 200, r.text
    body = r.json()
    test_share = [p for _, p in DEMO.participations if not p.live_mode]
    assert body["loaded"] == len(test_share) and body["deleted"] == 1
    assert body["skipped_other_mode"] == len(DEMO.participations) - len(test_share)
    got = ts.sb.list(limit=100).json()["data"]
    assert len(got) == len(test_share)
    ids = {p["id"] for p in got}
    world_ids = {p.id for p in test_share}
    # The default account's own participations keep their world ids; others' get new ones.
    own = {p.id for p in test_share if p.account_id == ACCOUNT_A}
    assert own <= ids and not (ids - own) & world_ids
    now = START + timedelta(days=3)
    for doc in got:
        check_participation(doc, live_mode=False, account_id=ACCOUNT_A)
        assert parse(doc["time_updated"]) <= now
    assert max(parse(d["time_updated"]) for d in got) == now - (DEMO.now - max(
        p.time_updated for p in test_share))
    assert body["clock"]["now"] == format_time(now)
    # Another account, and this account's live mode, are untouched.
    assert ts.sb.get(theirs["id"], account_id=ACCOUNT_B).json() == theirs
    assert ts.sb.list(live=True).json()["data"] == []
    # The same world into a second account does not collide with the first.
    r = ts.control("world", account_id=ACCOUNT_B, world="demo")
    assert r.status_code == 200 and r.json()["loaded"] == len(test_share)
    assert len(ts.sb.list(limit=100).json()["data"]) == len(test_share)


@pytest.mark.slow
def test_a_big_world_is_built_in_its_own_process_and_loads_the_same(tmp_path: Path) -> None:
    size = IN_PROCESS_MAX + 500
    ts = timed_sandbox(str(tmp_path / "big.db"))
    r = ts.control("world", world="load", size=size, seed=5)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["loaded"] + answer["skipped_other_mode"] == size
    assert sync(ts.sb.store.count()) == answer["loaded"]
    # The same rows as building it here: world_rows is the one producer of both paths.
    ns = Namespace(ACCOUNT_A, False)
    job = WorldJob("load", 5, size, ACCOUNT_A, False, START)
    here = [row for kind, rows in world_rows(job) if kind == "rows" for row in rows]
    page = ts.sb.list(limit=100).json()["data"]
    by_id = {row[0]: json.loads(row[10]) for row in here}
    assert all(doc == by_id[doc["id"]] for doc in page)
    assert sync(ts.sb.store.count(ns)) == len(here)
    sync(ts.sb.store.close())


@pytest.mark.slow
def test_a_build_past_its_memory_bound_fails_and_loads_nothing(tmp_path: Path) -> None:
    """The building process is bounded (`WorldJob.memory`): the largest world in 160 MiB fails
    with BuildFailed (the server answers 503 server_busy) instead of taking the machine's
    memory (8 builds at once reached 2.5 GB)."""

    async def build_all(job: WorldJob) -> int:
        rows = 0
        async for kind, payload in _messages(job):
            rows += len(payload) if kind == "rows" else 0
        return rows

    job = WorldJob("load", 0, 100_000, ACCOUNT_A, False, START, memory=160 * 2**20)
    with pytest.raises(BuildFailed, match="more than 160 MiB"):
        anyio.run(build_all, job)


def test_post_world_rejects_unknown_worlds_and_bad_sizes() -> None:
    ts = timed_sandbox()
    for body in ({"world": "nope"}, {"world": "load", "size": 100_001}, {}, {"world": "demo",
                                                                             "extra": 1}):
        r = ts.sb.client.post("/_sandbox/world", json=body, headers=ts.sb.headers())
        assert r.status_code == 400, body
        assert r.json()["code"] == "invalid_request_body"
        assert r.json()["context"] == "sandbox.world_load"
    r = ts.control("world", world="load", size=40, seed=2)
    assert r.status_code == 200 and r.json()["loaded"] + r.json()["skipped_other_mode"] == 40


def test_a_store_file_with_the_old_open_index_gets_the_unique_one(tmp_path: Path) -> None:
    db = tmp_path / "old-index.db"
    sync(open_store(str(db)).close())
    con = sqlite3.connect(db)
    con.execute("DROP INDEX participations_open")
    con.execute(
        "CREATE INDEX participations_open "
        "ON participations (account_id, live_mode, device_id, programme_id, terminal)"
    )
    con.commit()
    con.close()
    store = open_store(str(db))
    assert isinstance(store, SqliteStore)
    unique = {r[1]: r[2] for r in store._db.execute("PRAGMA index_list(participations)")}
    assert unique["participations_open"] == 1 and "participations_device" in unique
    provider = derived_provider("prv_" + "1" * 24)

    def make(pid: str) -> Any:
        return new_participation(
            id=pid, account_id=ACCOUNT_A, live_mode=False, device_id="dev_" + "2" * 24,
            location_id="loc_" + "2" * 24, reference_id=None, provider=provider,
            programme=derived_programme("vpr_" + "1" * 24, provider), now=START,
        )

    sync(store.insert(make("vpp_" + "a" * 24)))
    with pytest.raises(DuplicateParticipation):
        sync(store.insert(make("vpp_" + "b" * 24)))
    sync(store.close())


def test_accounts_of_the_sandbox_client_are_not_in_the_demo_world() -> None:
    # The in-process tests' accounts differ from the world's, so POST /_sandbox/world maps them.
    assert not {a.account_id for a in ACCOUNTS} & {a.account_id for a in DEMO.accounts}


@pytest.mark.slow
def test_vpp_sandbox_serve_world_over_http(tmp_path: Path) -> None:
    """The real command: `serve --world demo` prints what it loaded; the controls answer."""
    account = DEMO.accounts[1]  # a world account, not one of --account's
    with served("--world", "demo", "--db", str(tmp_path / "s.db"), cwd=tmp_path) as running:
        base = running.base_url
        r = requests.get(f"{base}/login", auth=(account.account_id, account.test_key), timeout=5)
        assert r.status_code == 200
        headers = {"Authorization": f"Bearer {r.json()['bearer_token']}"}
        page = requests.get(f"{base}/vpp-participations?limit=100", headers=headers, timeout=5)
        mine = [p for _, p in DEMO.participations
                if p.account_id == account.account_id and not p.live_mode]
        assert len(page.json()["data"]) == len(mine)
        r = requests.post(
            f"{base}/_sandbox/clock", json={"advance": "P7D"}, headers=headers, timeout=5
        )
        assert r.status_code == 200 and r.json()["object"] == "sandbox_clock"
        assert requests.get(f"{base}/_sandbox/ui/", timeout=5).status_code == 200
    out = running.output
    assert "World demo (seed 0): 44 participations loaded" in out


@pytest.mark.parametrize("name", ["demo", "edge-cases"])
def test_the_fast_world_rows_equal_shifting_then_storing(name: str) -> None:
    world = build(name, seed=1)
    delta = timedelta(days=24, hours=9, seconds=7)
    for _, p in world.participations:
        moved = shift(p, delta)
        fast = shifted_row(STORE, p, delta)
        assert fast[:10] + fast[11:] == STORE.row(moved)[:10] + STORE.row(moved)[11:]
        assert json.loads(fast[10]) == moved.to_json()


def test_world_settings_come_from_flags_or_the_environment() -> None:
    s = Settings.from_env({"VPP_WORLD": "load", "VPP_SEED": "4", "VPP_SIZE": "250"})
    assert (s.world, s.seed, s.size) == ("load", 4, 250)
    assert Settings.from_env({}, world="demo", size=None).size is None


def test_a_reset_gives_the_space_back(tmp_path: Path) -> None:
    """Deleted rows' pages go back to the file system and the WAL is emptied."""
    db = tmp_path / "space.db"
    ts = timed_sandbox(str(db))
    empty = db.stat().st_size
    assert ts.control("world", world="load", size=1500, seed=3).status_code == 200
    loaded = db.stat().st_size
    assert loaded > empty + 2_000_000  # 1,500 participations of about 2 kB
    r = ts.control("reset")
    assert r.status_code == 200 and r.json()["deleted"] > 0
    wal = Path(f"{db}-wal")
    assert db.stat().st_size < empty + 600_000, (empty, loaded, db.stat().st_size)
    assert not wal.exists() or wal.stat().st_size == 0
    sync(ts.sb.store.close())

"""One account's mode holds at most `--max-participations` participations (a shared sandbox).

The HTTP answer past the limit (409 namespace_full, nothing stored, the other mode and other
accounts unaffected, room again after a reset), the world loads that would pass it (a 400),
the setting from flags and the environment, and a data file made before the count existed
(counted once when opened). The count itself is proven on every engine in
`test_store_contract.py`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.sandbox_client import ACCOUNT_A, ACCOUNT_B, make_sandbox
from tests.stores import sync
from tests.test_http_errors import assert_error
from vpp_sandbox.cli import build_parser
from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import Namespace, SandboxClock
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.stores import open_store
from vpp_sandbox.mock_server.worlds import prepare

LIST = "/vpp-participations?limit=100"


def test_a_create_past_the_limit_is_409_namespace_full_and_stores_nothing() -> None:
    sb = make_sandbox(max_participations=3)
    for _ in range(3):
        assert sb.create().status_code == 201
    error = assert_error(sb.create(), 409, "namespace_full", "api.vpp_participation_create")
    assert "maximum of 3 participations" in error["message"]
    assert "POST /_sandbox/reset" in error["message"]
    assert len(sb.client.get(LIST, headers=sb.headers()).json()["data"]) == 3
    # The other mode and another account have their own room.
    assert sb.create(live=True).status_code == 201
    assert sb.create(account_id=ACCOUNT_B).status_code == 201
    # A reset empties the namespace, and it takes participations again.
    r = sb.client.post("/_sandbox/reset", headers=sb.headers())
    assert r.status_code == 200 and r.json()["deleted"] == 3
    assert sb.create().status_code == 201


def test_a_world_bigger_than_the_limit_is_refused_and_changes_nothing() -> None:
    sb = make_sandbox(max_participations=50)
    assert sb.create().status_code == 201
    r = sb.client.post(
        "/_sandbox/world", json={"world": "load", "size": 51}, headers=sb.headers()
    )
    error = assert_error(r, 400, "invalid_request_body")
    assert "size 51" in error["message"] and "50 or less" in error["message"]
    assert len(sb.client.get(LIST, headers=sb.headers()).json()["data"]) == 1
    r = sb.client.post(
        "/_sandbox/world", json={"world": "load", "size": 50}, headers=sb.headers()
    )
    assert r.status_code == 200, r.text


def test_the_limit_comes_from_the_flag_or_the_environment() -> None:
    assert Settings().max_participations == 100_000
    assert Settings.from_env({"VPP_MAX_PARTICIPATIONS": "250"}).max_participations == 250
    args = build_parser().parse_args(["serve", "--max-participations", "7"])
    assert args.max_participations == 7


def test_a_data_file_made_before_the_count_is_counted_when_opened(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    sb = make_sandbox(db)
    for _ in range(3):
        assert sb.create().status_code == 201
    sync(sb.store.close())
    with sqlite3.connect(db) as old:  # as the releases before the count left it
        old.execute("DROP TRIGGER participations_counted_in")
        old.execute("DROP TRIGGER participations_counted_out")
        old.execute("DROP TABLE sandbox_counts")
    sb = make_sandbox(db, max_participations=4)
    assert sb.create().status_code == 201
    assert_error(sb.create(), 409, "namespace_full")
    assert sync(sb.store.count(Namespace(ACCOUNT_A, False))) == 4


def test_a_start_up_world_past_the_limit_is_refused_before_anything_is_loaded(
    tmp_path: Path,
) -> None:
    """`serve --world` is an insert path too: a namespace of the world above the limit stops
    the start with what to change, and nothing is written."""
    db = str(tmp_path / "capped.db")
    settings = Settings(db=db, world="load", size=300, max_participations=100)
    store = open_store(db)
    with pytest.raises(ValueError, match="more than --max-participations 100"):
        sync(prepare(settings, store, SandboxClock(store), Catalog(store)))
    assert sync(store.count()) == 0
    sync(store.close())

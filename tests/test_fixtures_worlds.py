"""Seeded worlds: deterministic, schema-valid, invariant-clean, consistent, covering the table."""

from __future__ import annotations

import argparse
import functools
import itertools
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from tests.fixture_checks import EDGES, STATES, check_participation, history_edges
from tests.spec_tools import resolve_refs
from vpp_sandbox.fixtures.cli import run
from vpp_sandbox.fixtures.scenarios import SCENARIOS, next_step
from vpp_sandbox.fixtures.worlds import (
    COMMITTED,
    WORLDS_DIR,
    World,
    build,
    load_committed,
)
from vpp_sandbox.mock_server.lifecycle import TERMINAL, Participation, format_time
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

ROOT = Path(__file__).resolve().parents[1]
REASONS = {
    "AWAITING_TELEMETRY",
    "AWAITING_DISPATCH",
    "AWAITING_CONSENT",
    "OPERATOR_REQUEST",
    "CUSTOMER_REQUEST",
}
CASES = {
    "demo": ("demo", 0, None),
    "demo-seed-7": ("demo", 7, None),
    "edge-cases": ("edge-cases", 0, None),
    "load-300": ("load", 0, 300),
}


@functools.cache
def world(case: str) -> World:
    name, seed, size = CASES[case]
    return build(name, seed=seed, size=size)


@functools.cache
def documents(case: str) -> list[dict[str, Any]]:
    loaded: dict[str, Any] = orjson.loads(world(case).dumps())
    return [item["participation"] for item in loaded["participations"]]




@pytest.fixture(scope="module")
def validator() -> OAS30Validator:
    spec = yaml.safe_load((ROOT / "openapi" / "vpp-participations.yaml").read_text())
    schema = resolve_refs(spec, spec["components"]["schemas"]["VppParticipation"])
    # The components stay reachable: the timeline entries' discriminator names them.
    schema = {**schema, "components": spec["components"]}
    return OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER)


# -- determinism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_same_seed_gives_byte_identical_json(case: str) -> None:
    name, seed, size = CASES[case]
    assert build(name, seed=seed, size=size).dumps() == world(case).dumps()


@pytest.mark.parametrize("name,size", [("demo", None), ("edge-cases", None), ("load", 50)])
def test_another_seed_gives_other_data(name: str, size: int | None) -> None:
    assert build(name, seed=1, size=size).dumps() != build(name, seed=2, size=size).dumps()


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_world_equals_a_fresh_generation(name: str) -> None:
    committed = (WORLDS_DIR / f"{name}.json").read_bytes()
    assert committed == build(name).dumps(), f"regenerate: vpp-sandbox fixtures --world {name}"
    assert load_committed(name) == build(name)


@pytest.mark.parametrize("case", CASES)
def test_json_round_trip(case: str) -> None:
    w = world(case)
    again = World.loads(w.dumps())
    assert again == w
    assert again.dumps() == w.dumps()
    assert World.from_json(w.to_json()) == w
    for item in w.to_json()["participations"]:
        doc, scenario = item["participation"], item["scenario"]
        fast = Participation.from_json(doc, scenario)
        assert fast.document() == Participation.from_json(orjson.loads(fast.encode())).document()
        assert orjson.loads(fast.encode()) == doc  # the one codec, both ways
        assert all(t.utcoffset() == timedelta(0) for e in fast.timeline
                   for t in (e.occurred_at, e.expected_at) if t is not None)


# -- validity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_every_participation_validates_against_the_spec(
    case: str, validator: OAS30Validator
) -> None:
    for doc in documents(case):
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, f"{doc['id']}: {errors}"


@pytest.mark.parametrize("case", CASES)
def test_every_participation_keeps_the_single_object_invariants(case: str) -> None:
    for doc in documents(case):
        check_participation(doc)


@pytest.mark.parametrize("case", CASES)
def test_world_is_consistent(case: str) -> None:
    w = world(case)
    accounts = {a.account_id for a in w.accounts}
    devices = {d.id: d for d in w.devices}
    locations = {loc.id: loc for loc in w.locations}
    programmes = {p.id: p for p in w.programmes}
    providers = {p.id: p for p in w.providers}
    assert len(devices) == len(w.devices) and len(locations) == len(w.locations)
    for device in w.devices:
        home = locations[device.location_id]
        assert (home.account_id, home.live_mode) == (device.account_id, device.live_mode)
    open_keys: Counter[tuple[str, bool, str, str]] = Counter()
    for scenario, p in w.participations:
        assert scenario == p.scenario and scenario in SCENARIOS
        assert p.account_id in accounts
        device = devices[p.device_id]
        assert (device.account_id, device.live_mode) == (p.account_id, p.live_mode)
        assert p.location_id == device.location_id
        programme = programmes[p.programme.id]
        assert programme.party == p.programme
        assert providers[programme.provider_id].party == p.provider
        assert device.model.kind in programme.device_kinds
        if p.current_state not in TERMINAL:
            open_keys[(p.account_id, p.live_mode, p.device_id, p.programme.id)] += 1
    doubled = [k for k, n in open_keys.items() if n > 1]
    assert not doubled, f"two open participations for the same device and programme: {doubled}"
    catalogue = w.catalogue()
    for _, p in w.participations[:50]:
        assert catalogue.provider(p.provider.id) == p.provider
        assert catalogue.programme(p.programme.id) == p.programme
        assert catalogue.location_id(p.device_id) == p.location_id


@pytest.mark.parametrize("case", CASES)
def test_keys_ids_and_urls_look_real(case: str) -> None:
    w = world(case)
    for a in w.accounts:
        assert a.test_key.startswith("sk_test_") and a.live_key.startswith("sk_live_")
    for prv in w.providers:
        assert prv.id.startswith("prv_") and prv.logo_url.startswith("https://")
    for prg in w.programmes:
        assert prg.id.startswith("vpr_") and prg.learn_more_url.startswith("https://")
    assert all(loc.postcode and loc.city and loc.address_line1 for loc in w.locations)


@pytest.mark.parametrize("case", CASES)
def test_nothing_is_in_the_future_or_already_due_at_the_anchor(case: str) -> None:
    w = world(case)
    for _, p in w.participations:
        assert p.time_updated <= w.now
        due = next_step(p)
        assert due is None or due.at > w.now, f"{p.id} is overdue at {format_time(w.now)}"


def test_shifted_world_moves_every_time_and_stays_valid() -> None:
    w = world("edge-cases")
    later = w.shifted(w.now.replace(year=2027, month=3))
    assert later.now.year == 2027
    for (_, before), (_, after) in zip(w.participations, later.participations, strict=True):
        assert after.time_created - before.time_created == later.now - w.now
        check_participation(after.to_json())


# -- named worlds ----------------------------------------------------------------------------------


def test_demo_starts_with_the_default_sandbox_account_and_shows_every_state() -> None:
    w = world("demo")
    test, live = DEFAULT_ACCOUNT
    first = w.accounts[0]
    assert (first.account_id, first.test_key, first.live_key) == (
        test.account_id,
        test.api_key,
        live.api_key,
    )
    assert len(w.accounts) == 2
    namespaces = {(p.account_id, p.live_mode) for _, p in w.participations}
    assert namespaces == {(a.account_id, m) for a in w.accounts for m in (False, True)}
    mine = {p.current_state.value for _, p in w.participations if p.account_id == first.account_id
            and not p.live_mode}
    assert mine == set(STATES)
    assert 24 <= len(w.participations) <= 60
    assert set(w.settings_accounts()) >= set(DEFAULT_ACCOUNT)


def test_edge_cases_cover_every_state_reason_and_edge() -> None:
    docs = documents("edge-cases")
    assert {d["current_state"] for d in docs} == set(STATES)
    reasons = {r for d in docs for e in d["participation_state"] for r in e["suspension_reasons"]
               if e["status"] != "PENDING"}
    assert reasons == REASONS
    seen = {edge for d in docs for edge in history_edges(d)}
    assert seen >= EDGES, f"edges never taken: {sorted(EDGES - seen)}"
    assert ("SUSPENDED", "SUSPENDED") in seen
    assert ("UNENROLMENT_REQUESTED", "SUSPENDED") in seen
    assert ("UNENROLMENT_REQUESTED", "AWAITING_DEVICE_TELEMETRY") in seen
    assert any(d["reference_id"] is None for d in docs)
    assert any(len(d["suspension_reasons"]) == 5 for d in docs)


def _cancelled_leave(p: Participation) -> bool:
    states = [e.state.value for e in p.history]
    return any(
        a == "UNENROLMENT_REQUESTED" and b not in ("WINDING_DOWN", "FAILED")
        for a, b in itertools.pairwise(states)
    )


@pytest.mark.parametrize("case", ["demo", "edge-cases"])
def test_believable_mix(case: str) -> None:
    w = world(case)
    ps = [p for _, p in w.participations]
    assert Counter(s for s, _ in w.participations)["happy"] > len(ps) // 2
    passed = [{e.state.value for e in p.history} for p in ps]
    assert any("AWAITING_LOCATION_TELEMETRY" in states for states in passed)
    assert any("UNENROLMENT_REQUESTED" in states for states in passed)
    assert any(p.current.suspension_reasons for p in ps)
    assert any(_cancelled_leave(p) for p in ps)


def test_load_has_the_requested_size_and_spreads_over_namespaces() -> None:
    w = world("load-300")
    assert len(w.participations) == 300
    assert len({(p.account_id, p.live_mode) for _, p in w.participations}) == 4
    assert len({p.current_state for _, p in w.participations}) >= 10
    assert build("load", size=0).participations == ()


def test_unknown_world_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown world"):
        build("nope")


# -- command line ----------------------------------------------------------------------------------


def test_fixtures_command_writes_the_world(tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    args = argparse.Namespace(world="load", seed=3, size=20, out=str(out))
    assert run(args) == 0
    assert out.read_bytes() == build("load", seed=3, size=20).dumps(indent=False)


def test_fixtures_command_through_the_cli_and_stdout(
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    from vpp_sandbox.cli import main

    assert main(["fixtures", "--world", "edge-cases", "--out", "-"]) == 0
    assert capfdbinary.readouterr().out == build("edge-cases").dumps()


def test_fixtures_command_refuses_an_unknown_world(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(world="nope", seed=0, size=None, out="-")
    assert run(args) == 2
    assert "unknown world" in capsys.readouterr().err


def test_the_schema_check_is_real(validator: OAS30Validator) -> None:
    doc = dict(documents("demo")[0])
    doc["current_state"] = "NOPE"
    doc["time_created"] = "yesterday"
    doc["reference_id"] = None
    assert len(list(validator.iter_errors(doc))) == 2


@pytest.mark.parametrize("locale,country", [("en_GB", "GB"), ("de_DE", "DE"), ("en_US", "US")])
def test_worlds_follow_the_locale(locale: str, country: str) -> None:
    w = build("demo", locale=locale)
    assert w.locale == locale
    assert {loc.country_code for loc in w.locations} == {country}
    for doc in orjson.loads(w.dumps())["participations"]:
        check_participation(doc["participation"])

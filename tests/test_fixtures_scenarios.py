"""Scenario devices: documented ids, and each reaching its documented outcome under `advance`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixture_checks import check_participation
from vpp_sandbox.fixtures.catalogue import Catalogue
from vpp_sandbox.fixtures.scenarios import (
    DEFAULT_SCENARIO,
    SCENARIO_DEVICES,
    SCENARIOS,
    Scenario,
    advance,
    next_step,
    scenario_for_device,
)
from vpp_sandbox.fixtures.worlds import build
from vpp_sandbox.mock_server.lifecycle import (
    Participation,
    Party,
    Reason,
    Record,
    State,
    Status,
    apply_update,
    new_participation,
)

T0 = datetime(2026, 11, 3, 9, 15, tzinfo=UTC)
PROVIDER = Party("prv_8587fa49c7e5297ccc6c57e5", "Leap", "https://s.flatpeak.com/83b06a60e38c2.png")
PROGRAMME = Party(
    "vpr_6a1f8e375db9de605baadd46",
    "Community Powershare",
    "https://leap.example/programmes/community-powershare",
)


def _created(device_id: str, at: datetime = T0) -> Participation:
    return new_participation(
        id="vpp_7c2f1a9e4b0d8f3a6e2c5d10",
        account_id="acc_661677911f2197045e6cf1b1",
        live_mode=False,
        device_id=device_id,
        location_id="loc_641b90b758fb8e6293716e40",
        reference_id=None,
        provider=PROVIDER,
        programme=PROGRAMME,
        now=at,
        scenario=scenario_for_device(device_id),
    )


def test_scenario_devices_are_well_formed_and_cover_every_scenario() -> None:
    assert {d.scenario for d in SCENARIO_DEVICES.values()} == set(SCENARIOS)
    for device_id, device in SCENARIO_DEVICES.items():
        assert re.fullmatch(r"dev_[0-9a-f]{24}", device_id) and device.device_id == device_id
        assert re.fullmatch(r"loc_[0-9a-f]{24}", device.location_id)
        assert scenario_for_device(device_id) == device.scenario
        found = Catalogue().device(device_id)
        assert found is not None and found.model.manufacturer == device.manufacturer


def test_any_other_device_plays_the_happy_path() -> None:
    assert scenario_for_device("dev_63a6087272941ef077a8fd3e") == DEFAULT_SCENARIO == "happy"
    assert Catalogue().device("dev_63a6087272941ef077a8fd3e") is None


@pytest.mark.parametrize("device_id", sorted(SCENARIO_DEVICES))
def test_scenario_device_reaches_its_documented_outcome(device_id: str) -> None:
    scenario = SCENARIOS[scenario_for_device(device_id)]
    path = scenario.path()
    p = advance(_created(device_id), T0 + timedelta(days=60))
    assert p.current_state is scenario.outcome
    assert [(e.state, e.occurred_at) for e in p.history] == [(s, T0 + d) for s, d in path]
    check_participation(p.to_json())


@pytest.mark.parametrize("device_id", sorted(SCENARIO_DEVICES))
def test_advance_stops_at_the_clock_and_is_reproducible(device_id: str) -> None:
    start = _created(device_id)
    for days in (0, 1, 3, 8, 15, 30):
        until = T0 + timedelta(days=days)
        p = advance(start, until)
        assert p.time_updated <= until
        due = next_step(p)
        assert due is None or due.at > until
        assert advance(advance(start, until), T0 + timedelta(days=60)) == advance(
            start, T0 + timedelta(days=60)
        )


def test_outcomes_within_a_week_as_the_readme_promises() -> None:
    week = T0 + timedelta(days=7)
    outcomes = {
        d.scenario: advance(_created(d.device_id), week + timedelta(days=1)).current_state
        for d in SCENARIO_DEVICES.values()
    }
    assert outcomes == {
        "happy": State.ACTIVE,
        "ineligible": State.INELIGIBLE,
        "telemetry_never_arrives": State.FAILED,
        "telemetry_lost": State.SUSPENDED,
        "slow_registration": State.AWAITING_REGISTRATION,
    }
    assert advance(_created("dev_5ce0a7100000000000000001"), week).current_state is State.ACTIVE
    assert advance(_created("dev_5ce0a7100000000000000003"), week).current_state is State.FAILED
    assert advance(_created("dev_5ce0a7100000000000000002"), week).current_state is State.INELIGIBLE


def test_telemetry_lost_holds_in_suspended_with_the_reason() -> None:
    p = advance(_created("dev_5ce0a7100000000000000004"), T0 + timedelta(days=90))
    assert p.current_state is State.SUSPENDED
    assert p.current.suspension_reasons == (Reason.AWAITING_TELEMETRY,)
    assert next_step(p) is None
    assert not p.telemetry_active


def test_manual_updates_always_win_and_the_autopilot_continues_from_them() -> None:
    p = _created("dev_5ce0a7100000000000000002")  # would become INELIGIBLE
    at = T0 + timedelta(hours=1)
    p = apply_update(p, [Record(State.FAILED, Status.IN_PROGRESS, at)], at)
    assert next_step(p) is None
    assert advance(p, T0 + timedelta(days=60)) == p


def test_scenarios_describe_themselves() -> None:
    for name, scenario in SCENARIOS.items():
        assert isinstance(scenario, Scenario) and scenario.name == name
        assert scenario.title and scenario.description
        assert scenario.path()[-1][0] is scenario.outcome


@pytest.mark.parametrize("name", ["demo", "edge-cases"])
def test_every_world_participation_can_be_played_to_its_end(name: str) -> None:
    w = build(name)
    for _, p in w.participations:
        later = advance(p, w.now + timedelta(days=120))
        check_participation(later.to_json())
        assert later.history[: len(p.history) - 1] == p.history[:-1]

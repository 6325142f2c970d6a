"""Sandbox time: the autopilot moves participations as the namespace clock passes their steps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.fixture_checks import check_participation
from tests.sandbox_client import ACCOUNT_A, step
from tests.sandbox_time import START, parse, past, timed_sandbox
from tests.stores import sync
from vpp_sandbox.mock_server.autopilot import catch_up
from vpp_sandbox.mock_server.lifecycle import format_time
from vpp_sandbox.mock_server.scenarios import SCENARIO_DEVICES, SCENARIOS
from vpp_sandbox.mock_server.store_sqlite import SqliteStore

HAPPY = [
    "ENROLMENT_REQUESTED",
    "AWAITING_CUSTOMER_CONSENT",
    "AWAITING_DEVICE_TELEMETRY",
    "CHECKING_ELIGIBILITY",
    "AWAITING_REGISTRATION",
    "REGISTERED",
    "ACTIVE",
]


def test_a_created_participation_is_active_a_week_later_on_its_forecast() -> None:
    ts = timed_sandbox()
    created = ts.sb.create().json()
    forecast = [
        (e["state"], e["expected_at"])
        for e in created["participation_state"]
        if e["status"] == "PENDING"
    ]
    assert ts.advance("P7D")["now"] == format_time(START + timedelta(days=7))

    p = ts.sb.get(created["id"]).json()
    check_participation(p, live_mode=False, account_id=ACCOUNT_A)
    assert p["current_state"] == "ACTIVE" and p["control_active"] is True
    assert [s for s, _ in past(p)] == HAPPY
    # Every step happened exactly when the creation forecast said it would.
    assert past(p)[1:] == forecast
    assert p["time_created"] == created["time_created"]
    assert p["time_updated"] == forecast[-1][1]
    # History only grew: the creation's past is a prefix of the later one.
    assert past(p)[: len(past(created))] == past(created)
    # List and retrieve agree.
    listed = ts.sb.list().json()["data"]
    assert listed == [p]


def test_a_list_shows_the_moves_that_fell_due_before_it() -> None:
    """The first read after time passed is a list: it answers after the catch-up (the page read
    with the clock, before the moves, is not the answer)."""
    ts = timed_sandbox()
    created = ts.sb.create().json()
    ts.real.pass_(days=7)
    listed = ts.sb.list().json()["data"]
    assert [p["current_state"] for p in listed] == ["ACTIVE"]
    assert listed == [ts.sb.get(created["id"]).json()]


def test_nothing_moves_before_its_time() -> None:
    ts = timed_sandbox()
    created = ts.sb.create().json()
    ts.advance("PT4M59S")
    assert ts.sb.get(created["id"]).json() == created
    ts.advance(1)
    p = ts.sb.get(created["id"]).json()
    assert p["current_state"] == "AWAITING_CUSTOMER_CONSENT"
    assert past(p)[-1][1] == format_time(START + timedelta(minutes=5))


@pytest.mark.parametrize("device_id", sorted(SCENARIO_DEVICES))
def test_each_scenario_device_reaches_its_documented_outcome(device_id: str) -> None:
    scenario = SCENARIOS[SCENARIO_DEVICES[device_id].scenario]
    ts = timed_sandbox()
    pid = ts.sb.create(device_id=device_id).json()["id"]
    path = scenario.path()
    ts.advance(int((path[-1][1] - timedelta(seconds=1)).total_seconds()))
    before = ts.sb.get(pid).json()
    assert before["current_state"] == path[-2][0].value  # one second early: not yet
    ts.advance(1)
    p = ts.sb.get(pid).json()
    check_participation(p)
    assert p["current_state"] == scenario.outcome.value
    assert [(s, parse(t) - START) for s, t in past(p)] == [(s.value, d) for s, d in path]
    if scenario.outcome.value == "SUSPENDED":
        assert p["suspension_reasons"] == ["AWAITING_TELEMETRY"]
    # The outcome is where the scenario rests.
    ts.advance("P60D")
    assert ts.sb.get(pid).json() == p


def test_slow_registration_is_still_waiting_after_a_week() -> None:
    ts = timed_sandbox()
    pid = ts.sb.create(device_id="dev_5ce0a7100000000000000005").json()["id"]
    ts.advance("P1W")
    assert ts.sb.get(pid).json()["current_state"] == "AWAITING_REGISTRATION"
    ts.advance("P3W")
    assert ts.sb.get(pid).json()["current_state"] == "ACTIVE"


def test_autopilot_off_leaves_state_alone_and_on_again_catches_up_on_schedule() -> None:
    ts = timed_sandbox()
    created = ts.sb.create().json()
    forecast = [
        (e["state"], e["expected_at"])
        for e in created["participation_state"]
        if e["status"] == "PENDING"
    ]
    off = ts.clock(autopilot=False).json()
    assert off["autopilot"] is False
    ts.advance("P30D")
    assert ts.sb.get(created["id"]).json() == created
    assert ts.sb.list().json()["data"] == [created]
    assert ts.clock(autopilot=True).json()["autopilot"] is True
    p = ts.sb.get(created["id"]).json()
    check_participation(p)
    assert p["current_state"] == "ACTIVE"
    assert past(p)[1:] == forecast  # each step at its scheduled (now past) time


def test_manual_updates_work_with_the_autopilot_off_and_reschedule() -> None:
    ts = timed_sandbox()
    created = ts.sb.create().json()
    ts.clock(autopilot=False)
    ts.advance("P2D")
    r = ts.sb.update(created["id"], step("AWAITING_CUSTOMER_CONSENT"))
    assert r.status_code == 200
    manual = r.json()
    assert past(manual)[-1] == ("AWAITING_CUSTOMER_CONSENT", format_time(START + timedelta(days=2)))
    ts.clock(autopilot=True)
    assert ts.sb.get(created["id"]).json() == manual  # its next step is 4 h away
    ts.advance("P7D")
    p = ts.sb.get(created["id"]).json()
    forecast = [
        (e["state"], e["expected_at"])
        for e in manual["participation_state"]
        if e["status"] == "PENDING"
    ]
    assert p["current_state"] == "ACTIVE" and past(p)[len(past(manual)) :] == forecast


def test_no_autopilot_setting_switches_it_off_everywhere() -> None:
    ts = timed_sandbox(autopilot=False)
    created = ts.sb.create().json()
    assert ts.clock().json()["autopilot"] is False
    ts.advance("P30D")
    assert ts.sb.get(created["id"]).json() == created
    r = ts.clock(autopilot=True)
    assert r.status_code == 409 and r.json()["code"] == "autopilot_unavailable"
    assert ts.clock(autopilot=False).status_code == 200


def test_manual_updates_win_and_the_autopilot_continues_from_them() -> None:
    ts = timed_sandbox()
    pid = ts.sb.create(device_id="dev_5ce0a7100000000000000002").json()["id"]  # ineligible
    ts.advance("PT1H")
    r = ts.sb.update(pid, step("FAILED"))
    assert r.status_code == 200 and r.json()["current_state"] == "FAILED"
    ts.advance("P30D")
    p = ts.sb.get(pid).json()
    assert p == r.json()


def test_the_clock_never_goes_back() -> None:
    ts = timed_sandbox()
    created = ts.sb.create().json()
    ts.advance("P1D")
    now = ts.clock().json()["now"]
    r = ts.clock(set="2026-11-01T00:00:00Z")
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "clock_cannot_go_back" and body["context"] == "sandbox.clock_update"
    assert now in body["message"] and "forward" in body["message"]
    for bad in ({"advance": -5}, {"advance": "P"}, {"advance": "PT"}, {"advance": "1 day"},
                {"advance": "P1M"}, {"advance": "P1D", "set": now}, {}, {"rewind": "P1D"}):
        r = ts.clock(**bad) if bad else ts.sb.client.post(
            "/_sandbox/clock", json={}, headers=ts.sb.headers()
        )
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["object"] == "error"
    assert ts.clock().json()["now"] == now
    # Setting it to now, or later, is fine.
    assert ts.clock(set=now).json()["now"] == now
    later = format_time(parse(now) + timedelta(days=2))
    assert ts.clock(set=later).json()["now"] == later
    assert ts.sb.get(created["id"]).json()["current_state"] == "CHECKING_ELIGIBILITY"


def test_two_reads_at_one_instant_agree_and_a_frozen_clock_stands_still() -> None:
    ts = timed_sandbox()
    ids = [ts.sb.create().json()["id"] for _ in range(5)]
    frozen = ts.clock(freeze=True).json()
    assert frozen["frozen"] is True
    ts.advance("PT4H5M")  # exactly when device telemetry is expected
    first = [ts.sb.get(pid).json() for pid in ids]
    ts.real.pass_(hours=30)  # wall time passes: a frozen clock does not
    assert ts.clock().json()["now"] == format_time(START + timedelta(hours=4, minutes=5))
    second = [ts.sb.get(pid).json() for pid in ids]
    assert first == second
    assert ts.sb.list().json()["data"] == sorted(
        second, key=lambda p: (p["time_created"], p["id"]), reverse=True
    )
    assert {p["current_state"] for p in first} == {"AWAITING_DEVICE_TELEMETRY"}
    # Unfrozen, it runs on from where it stood.
    ts.clock(freeze=False)
    ts.real.pass_(minutes=10)
    assert ts.clock().json()["now"] == format_time(START + timedelta(hours=4, minutes=15))


def test_control_calls_touch_only_their_own_namespace() -> None:
    ts = timed_sandbox()
    other = "acc_" + "b2" * 12
    mine = ts.sb.create().json()
    mine_live = ts.sb.create(live=True).json()
    theirs = ts.sb.create(account_id=other).json()
    their_clock = ts.clock(other).json()

    ts.advance("P7D")
    ts.clock(freeze=True, autopilot=False)
    assert ts.sb.get(mine["id"]).json()["current_state"] == "ACTIVE"
    assert ts.clock(other).json() == their_clock
    assert ts.sb.get(theirs["id"], account_id=other).json() == theirs
    assert ts.sb.get(mine_live["id"], live=True).json() == mine_live
    assert ts.clock(live=True).json()["now"] == format_time(START)

    r = ts.control("world", world="demo")
    assert r.status_code == 200
    r = ts.control("reset")
    assert r.status_code == 200 and r.json()["deleted"] >= 1
    assert ts.sb.list().json()["data"] == []
    assert ts.sb.get(theirs["id"], account_id=other).json() == theirs
    assert ts.sb.get(mine_live["id"], live=True).json() == mine_live
    assert [p["id"] for p in ts.sb.list(account_id=other).json()["data"]] == [theirs["id"]]
    # Reset: back to real time, running, autopilot on.
    clock = ts.clock().json()
    assert (clock["now"], clock["frozen"], clock["autopilot"]) == (format_time(START), False, True)


def test_clock_and_autopilot_state_survive_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "sandbox.db")
    first = timed_sandbox(db)
    pid = first.sb.create().json()["id"]
    first.advance("P7D")
    first.clock(freeze=True, autopilot=False)
    token = first.sb.token()
    active = first.sb.get(pid).json()
    assert active["current_state"] == "ACTIVE"
    sync(first.sb.store.close())

    second = timed_sandbox(db)
    second.sb._tokens[(ACCOUNT_A, False)] = token
    clock = second.clock().json()
    assert clock["now"] == format_time(START + timedelta(days=7))
    assert (clock["frozen"], clock["autopilot"]) == (True, False)
    assert second.sb.get(pid).json() == active
    sync(second.sb.store.close())


def test_only_due_rows_are_touched() -> None:
    ts = timed_sandbox()
    ns_pids = [ts.sb.create().json()["id"] for _ in range(3)]
    from vpp_sandbox.mock_server.clock import Namespace

    ns = Namespace(ACCOUNT_A, False)
    store = ts.sb.store
    assert sync(catch_up(store, ns, START)) == 0
    assert sync(catch_up(store, ns, START + timedelta(minutes=5))) == len(ns_pids)
    assert sync(catch_up(store, ns, START + timedelta(minutes=5))) == 0
    # A row's next_due_at follows its state: terminal rows are never due again.
    assert isinstance(store, SqliteStore)
    plan = store._db.execute("EXPLAIN QUERY PLAN SELECT 1 FROM participations WHERE "
                             "account_id=? AND live_mode=? AND next_due_at IS NOT NULL "
                             "AND next_due_at<=? LIMIT 1", (ACCOUNT_A, 0, "x")).fetchall()
    assert "participations_due" in str(plan)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P7D", timedelta(days=7)),
        ("P1W", timedelta(weeks=1)),
        ("PT36H", timedelta(hours=36)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("PT90S", timedelta(seconds=90)),
        (604800, timedelta(days=7)),
        (0, timedelta(0)),
    ],
)
def test_durations(text: str | int, expected: timedelta) -> None:
    from vpp_sandbox.mock_server.control import parse_duration

    assert parse_duration(text) == expected
    ts = timed_sandbox()
    assert ts.advance(text)["now"] == format_time(START + expected)


def test_set_takes_any_offset_and_fractions_and_moves_a_frozen_clock() -> None:
    ts = timed_sandbox()
    ts.clock(freeze=True)
    r = ts.clock(set="2026-11-03T10:00:00.750+01:00")
    assert r.status_code == 200 and r.json()["now"] == "2026-11-03T09:00:00Z"
    assert r.json()["frozen"] is True
    ts.real.pass_(days=3)
    assert ts.clock().json()["now"] == "2026-11-03T09:00:00Z"

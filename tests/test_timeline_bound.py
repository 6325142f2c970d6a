"""The history bound: at most 500 entries, near it only the moves that end a participation.

The pure rule (lifecycle.py), the HTTP answer (409 timeline_full, nothing changed), the way out
(a full participation can always be ended), and the contract suite's oracle agreeing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.sandbox_client import ACCOUNT_A, make_sandbox, new_id, step
from tests.stores import sync
from tests.test_http_errors import assert_error
from vpp_sandbox.contract_tests import model
from vpp_sandbox.mock_server.lifecycle import (
    HAPPY_PATH,
    LEAVING_RESERVE,
    MAX_HISTORY,
    Participation,
    Party,
    Reason,
    Record,
    State,
    Status,
    TimelineFull,
    apply_update,
    new_participation,
)

S = State
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FULL = MAX_HISTORY - LEAVING_RESERVE


def record(state: State, status: Status = Status.IN_PROGRESS) -> Record:
    reasons = (Reason.OPERATOR_REQUEST,) if state is S.SUSPENDED else ()
    return Record(state, status, suspension_reasons=reasons)


def active(account_id: str = ACCOUNT_A) -> tuple[Participation, datetime]:
    p = new_participation(
        id=new_id("vpp"),
        account_id=account_id,
        live_mode=False,
        device_id=new_id("dev"),
        location_id=new_id("loc"),
        reference_id=None,
        provider=Party(new_id("prv"), "Provider", "https://example.com/logo.png"),
        programme=Party(new_id("vpr"), "Programme", "https://example.com/programme"),
        now=T0,
    )
    now = T0
    for state in HAPPY_PATH[1:]:  # from ENROLMENT_REQUESTED to ACTIVE
        now += timedelta(minutes=1)
        p = apply_update(p, [record(state)], now)
    return p, now


def grown_to(size: int) -> tuple[Participation, datetime]:
    """An ACTIVE or SUSPENDED participation whose history holds exactly `size` entries.

    Grown by the real rule: suspended and resumed, one update at a time.
    """
    p, now = active()
    while len(p.history) < size:
        now += timedelta(minutes=1)
        p = apply_update(p, [record(other(p.current_state))], now)
    assert len(p.history) == size
    return p, now


def other(state: State) -> State:
    return S.SUSPENDED if state is S.ACTIVE else S.ACTIVE


def other_step(p: Participation) -> dict[str, Any]:
    """The request record for the move `other` makes, with a reason when it suspends."""
    extra: dict[str, Any] = (
        {"suspension_reasons": ["OPERATOR_REQUEST"]} if p.current_state is S.ACTIVE else {}
    )
    return step(other(p.current_state).value, **extra)


def test_up_to_the_reserve_every_legal_move_is_taken() -> None:
    p, now = grown_to(FULL - 1)
    moved = apply_update(p, [record(other(p.current_state))], now + timedelta(minutes=1))
    assert len(moved.history) == FULL


def test_past_the_reserve_a_move_that_does_not_end_it_is_timeline_full() -> None:
    p, now = grown_to(FULL)
    with pytest.raises(TimelineFull) as caught:
        apply_update(p, [record(other(p.current_state))], now + timedelta(minutes=1))
    message = caught.value.message
    assert caught.value.code == "timeline_full"
    assert str(MAX_HISTORY) in message and p.device_id in message
    assert "UNENROLMENT_REQUESTED" in message and "create a new participation" in message


def test_a_multi_step_update_crossing_the_reserve_with_a_loop_is_refused() -> None:
    p, now = grown_to(FULL - 1)
    assert p.current_state in (S.ACTIVE, S.SUSPENDED)
    steps = [
        record(other(p.current_state), Status.COMPLETE),
        record(p.current_state),
    ]
    with pytest.raises(TimelineFull):
        apply_update(p, steps, now + timedelta(minutes=1))


def test_a_full_participation_can_always_be_ended_within_the_bound() -> None:
    p, now = grown_to(FULL)
    for state in (S.UNENROLMENT_REQUESTED, S.WINDING_DOWN, S.UNENROLLED, S.OFFBOARDED):
        now += timedelta(minutes=1)
        p = apply_update(p, [record(state)], now)
    assert p.current_state is S.OFFBOARDED
    assert len(p.history) == MAX_HISTORY
    assert len(p.timeline) == MAX_HISTORY  # terminal: no PENDING tail


def test_the_way_out_in_one_update_and_through_failed() -> None:
    p, now = grown_to(FULL)
    steps = [
        record(S.UNENROLMENT_REQUESTED, Status.COMPLETE),
        record(S.WINDING_DOWN, Status.COMPLETE),
        record(S.UNENROLLED),
    ]
    out = apply_update(p, steps, now + timedelta(minutes=1))
    assert out.current_state is S.UNENROLLED and len(out.history) <= MAX_HISTORY
    leaving = apply_update(p, [record(S.UNENROLMENT_REQUESTED)], now + timedelta(minutes=1))
    # Cancelling the leave request would loop again: refused once full.
    with pytest.raises(TimelineFull):
        apply_update(leaving, [record(p.current_state)], now + timedelta(minutes=2))
    failed = apply_update(leaving, [record(S.FAILED)], now + timedelta(minutes=2))
    assert failed.current_state is S.FAILED


def test_a_resubmission_of_a_full_participation_is_still_idempotent() -> None:
    p, now = grown_to(FULL)
    again = apply_update(
        p,
        [
            Record(
                p.current_state, Status.IN_PROGRESS, suspension_reasons=p.current.suspension_reasons
            )
        ],
        now,
    )
    assert again is p


# -- over HTTP, and the oracle -------------------------------------------------------------------


def view(p: Participation) -> dict[str, Any]:
    return p.to_json()


def test_http_answers_409_timeline_full_and_changes_nothing() -> None:
    sb = make_sandbox()
    p, _ = grown_to(FULL)
    sync(sb.store.load_rows([sb.store.row(p)]))
    before = sb.get(p.id).json()
    move = [other_step(p)]
    assert model.judge_update(before, move).status == 409  # the suite's oracle agrees
    r = sb.update(p.id, *move)
    error = assert_error(r, 409, "timeline_full", "api.vpp_participation_update")
    assert p.id in error["message"]
    assert sb.get(p.id).json() == before
    for state in ("UNENROLMENT_REQUESTED", "WINDING_DOWN", "UNENROLLED", "OFFBOARDED"):
        seen = sb.get(p.id).json()
        assert model.judge_update(seen, [step(state)]).status == 200
        r = sb.update(p.id, step(state))
        assert r.status_code == 200, r.text
    final = sb.get(p.id).json()
    assert final["current_state"] == "OFFBOARDED"
    assert len(final["participation_state"]) == MAX_HISTORY


def test_the_oracle_takes_every_move_below_the_reserve() -> None:
    p, _ = grown_to(FULL - 1)
    move = [other_step(p)]
    assert model.judge_update(view(p), move).status == 200
    assert model.MAX_HISTORY == MAX_HISTORY
    assert {
        s.value
        for s in (S.UNENROLMENT_REQUESTED, S.WINDING_DOWN, S.UNENROLLED, S.OFFBOARDED, S.FAILED)
    } == model.ENDING

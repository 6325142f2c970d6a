"""Unit tests of the pure lifecycle: every (from, to) pair, the timeline rebuild, the invariants."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vpp_sandbox.mock_server.lifecycle import (
    IllegalTransition,
    InvalidTimeline,
    LifecycleError,
    Participation,
    Party,
    Reason,
    Record,
    State,
    Status,
    apply_update,
    new_participation,
    parse_records,
    parse_time,
)

S = State
T0 = datetime(2026, 11, 3, 9, 15, tzinfo=UTC)
ACCOUNT = "acc_661677911f2197045e6cf1b1"

# The contract's section 4, written out again independently of lifecycle.TRANSITIONS.
CONTRACT_TABLE = """
ENROLMENT_REQUESTED | AWAITING_CUSTOMER_CONSENT, FAILED
AWAITING_CUSTOMER_CONSENT | AWAITING_DEVICE_TELEMETRY, UNENROLMENT_REQUESTED, FAILED
AWAITING_DEVICE_TELEMETRY | AWAITING_LOCATION_TELEMETRY, CHECKING_ELIGIBILITY,\
    UNENROLMENT_REQUESTED, FAILED
AWAITING_LOCATION_TELEMETRY | CHECKING_ELIGIBILITY, UNENROLMENT_REQUESTED, FAILED
CHECKING_ELIGIBILITY | AWAITING_REGISTRATION, INELIGIBLE, FAILED
AWAITING_REGISTRATION | REGISTERED, UNENROLMENT_REQUESTED, FAILED
REGISTERED | ACTIVE, FAILED
ACTIVE | SUSPENDED, UNENROLMENT_REQUESTED
SUSPENDED | ACTIVE, SUSPENDED, UNENROLMENT_REQUESTED
UNENROLMENT_REQUESTED | WINDING_DOWN, FAILED, PREVIOUS
WINDING_DOWN | UNENROLLED, FAILED
UNENROLLED | OFFBOARDED
INELIGIBLE |
OFFBOARDED |
FAILED |
"""


def _contract() -> dict[str, set[str]]:
    table = {}
    for line in CONTRACT_TABLE.strip().splitlines():  # a trailing \ continues a line
        frm, _, to = line.partition("|")
        table[frm.strip()] = {t.strip() for t in to.split(",") if t.strip()}
    return table


CONTRACT = _contract()
TERMINAL_NAMES = {"INELIGIBLE", "OFFBOARDED", "FAILED"}

JOIN = [
    S.AWAITING_CUSTOMER_CONSENT,
    S.AWAITING_DEVICE_TELEMETRY,
    S.CHECKING_ELIGIBILITY,
    S.AWAITING_REGISTRATION,
    S.REGISTERED,
    S.ACTIVE,
]
# A legal path from creation to each state; UNENROLMENT_REQUESTED is requested from ACTIVE.
PATH_TO: dict[State, list[State]] = {
    S.ENROLMENT_REQUESTED: [],
    S.AWAITING_CUSTOMER_CONSENT: JOIN[:1],
    S.AWAITING_DEVICE_TELEMETRY: JOIN[:2],
    S.AWAITING_LOCATION_TELEMETRY: [*JOIN[:2], S.AWAITING_LOCATION_TELEMETRY],
    S.CHECKING_ELIGIBILITY: JOIN[:3],
    S.AWAITING_REGISTRATION: JOIN[:4],
    S.REGISTERED: JOIN[:5],
    S.INELIGIBLE: [*JOIN[:3], S.INELIGIBLE],
    S.ACTIVE: JOIN,
    S.SUSPENDED: [*JOIN, S.SUSPENDED],
    S.UNENROLMENT_REQUESTED: [*JOIN, S.UNENROLMENT_REQUESTED],
    S.WINDING_DOWN: [*JOIN, S.UNENROLMENT_REQUESTED, S.WINDING_DOWN],
    S.UNENROLLED: [*JOIN, S.UNENROLMENT_REQUESTED, S.WINDING_DOWN, S.UNENROLLED],
    S.OFFBOARDED: [
        *JOIN,
        S.UNENROLMENT_REQUESTED,
        S.WINDING_DOWN,
        S.UNENROLLED,
        S.OFFBOARDED,
    ],
    S.FAILED: [S.AWAITING_CUSTOMER_CONSENT, S.FAILED],
}
assert set(PATH_TO) == set(State)


def fresh(now: datetime = T0) -> Participation:
    return new_participation(
        id="vpp_" + "7c" * 12,
        account_id=ACCOUNT,
        live_mode=False,
        device_id="dev_" + "63" * 12,
        location_id="loc_" + "64" * 12,
        reference_id="AZ01346701301",
        provider=Party("prv_" + "85" * 12, "Leap", "https://s.flatpeak.com/83b06a60e38c2.png"),
        programme=Party(
            "vpr_" + "6a" * 12,
            "Community Powershare",
            "https://leap.com/programmes/community-powershare",
        ),
        now=now,
    )


def rec(state: State, reasons: Sequence[Reason] = (), **kw: Any) -> Record:
    if state is S.SUSPENDED and not reasons:
        reasons = (Reason.AWAITING_TELEMETRY,)
    return Record(state, Status.IN_PROGRESS, suspension_reasons=tuple(reasons), **kw)


def walk(states: Sequence[State], start: datetime = T0) -> tuple[Participation, datetime]:
    p = fresh(start)
    now = start
    for state in states:
        now += timedelta(minutes=10)
        p = apply_update(p, [rec(state)], now)
        check_invariants(p)
    return p, now


# -- the invariants of the contract's section 5, on one object ----------------------------------

ALLOWED: dict[str, set[str]] = {s: {t for t in to if t != "PREVIOUS"} for s, to in CONTRACT.items()}


def _legal(frm: str, to: str, previous: str | None) -> bool:
    return to in ALLOWED[frm] or (
        frm == "UNENROLMENT_REQUESTED" and previous is not None and to == previous
    )


def check_invariants(p: Participation) -> None:
    """Section 5, items 1 to 9, on the participation as the API shows it."""
    j = p.to_json()
    tl = j["participation_state"]
    statuses = [e["status"] for e in tl]
    # 1. exactly one IN_PROGRESS entry, equal to current_state
    assert statuses.count("IN_PROGRESS") == 1, statuses
    current = next(e for e in tl if e["status"] == "IN_PROGRESS")
    assert current["state"] == j["current_state"]
    # 2. COMPLETE..., IN_PROGRESS, PENDING...
    pivot = statuses.index("IN_PROGRESS")
    assert all(s == "COMPLETE" for s in statuses[:pivot])
    assert all(s == "PENDING" for s in statuses[pivot + 1 :])
    # 3. consecutive past entries are legal transitions, the first is ENROLMENT_REQUESTED
    past = tl[: pivot + 1]
    assert past[0]["state"] == "ENROLMENT_REQUESTED"
    for i in range(1, len(past)):
        previous = past[i - 2]["state"] if i >= 2 else None
        assert _legal(past[i - 1]["state"], past[i]["state"], previous), (
            past[i - 1]["state"],
            past[i]["state"],
        )
    # 4. the PENDING tail is a legal path; terminal states have none
    tail = tl[pivot + 1 :]
    if j["current_state"] in TERMINAL_NAMES:
        assert tail == []
    state = j["current_state"]
    previous = past[-2]["state"] if len(past) >= 2 else None
    for e in tail:
        assert _legal(state, e["state"], previous), (state, e["state"])
        previous, state = state, e["state"]
    # 5. times: occurred_at on past entries, non-decreasing; expected_at on PENDING ones
    occurred = [parse_time(e["occurred_at"]) for e in past]
    assert occurred == sorted(occurred)
    assert all("occurred_at" not in e and "expected_at" in e for e in tail)
    expected = [parse_time(e["expected_at"]) for e in tail]
    assert expected == sorted(expected)
    assert all(x >= occurred[-1] for x in expected)
    # 6. time_created <= every occurred_at <= time_updated
    created, updated = parse_time(j["time_created"]), parse_time(j["time_updated"])
    assert all(created <= o <= updated for o in occurred)
    # 7. control_active iff ACTIVE
    assert j["control_active"] is (j["current_state"] == "ACTIVE")
    # 8. suspension reasons
    reasons = j["suspension_reasons"]
    assert bool(reasons) is (j["current_state"] == "SUSPENDED")
    assert len(set(reasons)) == len(reasons)
    assert reasons == current["suspension_reasons"]
    for e in tl:
        if e["state"] != "SUSPENDED":
            assert e["suspension_reasons"] == []
    # 9. identity
    assert j["object"] == "vpp-participation"
    assert j["id"].startswith("vpp_") and len(j["id"]) == 28
    assert j["account_id"] == ACCOUNT and j["live_mode"] is False
    for e in tl:
        assert e["state"] in CONTRACT and e["description"]


# -- the transition table: all 225 (from, to) pairs ------------------------------------------


@pytest.mark.parametrize("frm", list(State), ids=str)
@pytest.mark.parametrize("to", list(State), ids=str)
def test_every_pair_against_the_contract_table(frm: State, to: State) -> None:
    p, now = walk(PATH_TO[frm])
    before = p.to_json()
    history = p.history
    previous = history[-2].state.value if len(history) >= 2 else None
    legal = to.value in ALLOWED[frm.value] or (
        frm is S.UNENROLMENT_REQUESTED and to.value == previous
    )
    reasons = (Reason.OPERATOR_REQUEST,) if to is S.SUSPENDED else ()
    later = now + timedelta(minutes=5)
    if frm is to and frm is not S.SUSPENDED:
        # Re-submitting the current state is idempotent (contract section 6).
        assert apply_update(p, [rec(to)], later) == p
        return
    if legal:
        q = apply_update(p, [rec(to, reasons)], later)
        assert q.current_state is to
        assert q.history[: len(history) - 1] == history[:-1]
        assert q.history[len(history) - 1].status is Status.COMPLETE
        check_invariants(q)
    else:
        with pytest.raises(IllegalTransition) as info:
            apply_update(p, [rec(to, reasons)], later)
        assert p.to_json() == before
        if frm.value in TERMINAL_NAMES:
            assert "terminal" in info.value.message
        else:
            assert "Allowed next states:" in info.value.message


def test_the_pair_table_has_225_cases_and_the_contract_has_every_state() -> None:
    assert len(list(State)) ** 2 == 225
    assert set(CONTRACT) == {s.value for s in State}


# -- timeline rebuild -----------------------------------------------------------------------


def _tail(p: Participation) -> list[str]:
    return [e.state.value for e in p.pending]


def test_new_participation_has_the_happy_path_as_pending_tail() -> None:
    p = fresh()
    check_invariants(p)
    assert p.current_state is S.ENROLMENT_REQUESTED
    assert _tail(p) == [s.value for s in JOIN]
    assert p.time_created == p.time_updated == T0


@pytest.mark.parametrize(
    ("state", "tail"),
    [
        (S.AWAITING_LOCATION_TELEMETRY, JOIN[2:]),
        (S.AWAITING_DEVICE_TELEMETRY, JOIN[2:]),
        (S.REGISTERED, JOIN[5:]),
        (S.ACTIVE, []),
        (S.SUSPENDED, [S.ACTIVE]),
        (S.UNENROLMENT_REQUESTED, [S.WINDING_DOWN, S.UNENROLLED, S.OFFBOARDED]),
        (S.UNENROLLED, [S.OFFBOARDED]),
        (S.OFFBOARDED, []),
        (S.INELIGIBLE, []),
        (S.FAILED, []),
    ],
)
def test_pending_tail_is_recomputed(state: State, tail: list[State]) -> None:
    p, _ = walk(PATH_TO[state])
    assert _tail(p) == [s.value for s in tail]


def test_complete_records_pass_through_several_states_in_one_update() -> None:
    p = fresh()
    now = T0 + timedelta(days=7)
    records = [
        Record(S.AWAITING_CUSTOMER_CONSENT, Status.COMPLETE, T0 + timedelta(minutes=1)),
        Record(S.AWAITING_DEVICE_TELEMETRY, Status.COMPLETE, T0 + timedelta(hours=2)),
        Record(S.CHECKING_ELIGIBILITY, Status.COMPLETE, T0 + timedelta(days=1)),
        Record(S.AWAITING_REGISTRATION, Status.COMPLETE, T0 + timedelta(days=2)),
        Record(S.REGISTERED, Status.COMPLETE, T0 + timedelta(days=5)),
        Record(S.ACTIVE, Status.IN_PROGRESS, T0 + timedelta(days=5, minutes=10)),
    ]
    q = apply_update(p, records, now)
    check_invariants(q)
    assert [e.state for e in q.history] == [S.ENROLMENT_REQUESTED, *JOIN]
    assert q.history[-1].occurred_at == T0 + timedelta(days=5, minutes=10)
    assert q.time_updated == now
    assert q.telemetry_active and q.control_active


def test_an_illegal_step_inside_a_multi_record_update_changes_nothing() -> None:
    p = fresh()
    before = p.to_json()
    records = [
        Record(S.AWAITING_CUSTOMER_CONSENT, Status.COMPLETE),
        Record(S.ACTIVE, Status.IN_PROGRESS),
    ]
    with pytest.raises(IllegalTransition, match="AWAITING_DEVICE_TELEMETRY"):
        apply_update(p, records, T0 + timedelta(hours=1))
    assert p.to_json() == before


def test_client_pending_records_replace_the_tail_and_must_be_a_legal_path() -> None:
    p, now = walk(PATH_TO[S.AWAITING_DEVICE_TELEMETRY])
    later = now + timedelta(minutes=1)
    custom = [
        rec(S.AWAITING_DEVICE_TELEMETRY),
        Record(
            S.AWAITING_LOCATION_TELEMETRY, Status.PENDING, expected_at=later + timedelta(days=1)
        ),
        Record(S.CHECKING_ELIGIBILITY, Status.PENDING),
    ]
    q = apply_update(p, custom, later)
    check_invariants(q)
    assert _tail(q) == ["AWAITING_LOCATION_TELEMETRY", "CHECKING_ELIGIBILITY"]
    assert q.history == p.history  # a resubmission with a tail only rewrites the tail
    bad = [rec(S.AWAITING_DEVICE_TELEMETRY), Record(S.ACTIVE, Status.PENDING)]
    with pytest.raises(InvalidTimeline, match="not a legal path"):
        apply_update(p, bad, later)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([], "empty"),
        ([Record(S.AWAITING_CUSTOMER_CONSENT, Status.COMPLETE)], "exactly one IN_PROGRESS"),
        (
            [rec(S.AWAITING_CUSTOMER_CONSENT), rec(S.AWAITING_DEVICE_TELEMETRY)],
            "exactly one IN_PROGRESS",
        ),
        (
            [
                Record(S.AWAITING_CUSTOMER_CONSENT, Status.PENDING),
                rec(S.AWAITING_CUSTOMER_CONSENT),
            ],
            "comes before",
        ),
        (
            [rec(S.AWAITING_CUSTOMER_CONSENT, expected_at=T0)],
            "only PENDING records take expected_at",
        ),
        (
            [rec(S.AWAITING_CUSTOMER_CONSENT, occurred_at=T0 + timedelta(days=30))],
            "in the future",
        ),
        (
            [rec(S.AWAITING_CUSTOMER_CONSENT, occurred_at=T0 - timedelta(days=1))],
            "must not go back",
        ),
        (
            [rec(S.AWAITING_CUSTOMER_CONSENT, reasons=(Reason.CUSTOMER_REQUEST,))],
            "only SUSPENDED records take reasons",
        ),
    ],
)
def test_malformed_updates_raise_and_change_nothing(records: list[Record], message: str) -> None:
    p = fresh()
    before = p.to_json()
    with pytest.raises(InvalidTimeline, match=message):
        apply_update(p, records, T0 + timedelta(hours=1))
    assert p.to_json() == before


def test_suspended_needs_reasons_and_resubmission_with_new_reasons_appends() -> None:
    p, now = walk(PATH_TO[S.ACTIVE])
    with pytest.raises(InvalidTimeline, match="without suspension_reasons"):
        apply_update(p, [Record(S.SUSPENDED, Status.IN_PROGRESS)], now)
    s1 = apply_update(p, [rec(S.SUSPENDED, (Reason.AWAITING_TELEMETRY,))], now)
    assert not s1.telemetry_active
    same = apply_update(s1, [rec(S.SUSPENDED, (Reason.AWAITING_TELEMETRY,))], now)
    assert same == s1
    s2 = apply_update(s1, [rec(S.SUSPENDED, (Reason.OPERATOR_REQUEST,))], now)
    check_invariants(s2)
    assert [e.state for e in s2.history][-2:] == [S.SUSPENDED, S.SUSPENDED]
    assert s2.current.suspension_reasons == (Reason.OPERATOR_REQUEST,)
    assert s2.history[-2].suspension_reasons == (Reason.AWAITING_TELEMETRY,)


def test_cancelled_leave_request_returns_and_restores_reasons() -> None:
    p, now = walk(PATH_TO[S.SUSPENDED])
    reasons = p.current.suspension_reasons
    left = apply_update(p, [rec(S.UNENROLMENT_REQUESTED)], now)
    back = apply_update(left, [Record(S.SUSPENDED, Status.IN_PROGRESS)], now)
    check_invariants(back)
    assert back.current_state is S.SUSPENDED
    assert back.current.suspension_reasons == reasons
    # From a joining state, the leave request can go back there only.
    q, now = walk(PATH_TO[S.AWAITING_REGISTRATION])
    q = apply_update(q, [rec(S.UNENROLMENT_REQUESTED)], now)
    with pytest.raises(IllegalTransition, match="AWAITING_REGISTRATION"):
        apply_update(q, [rec(S.ACTIVE)], now)
    q = apply_update(q, [rec(S.AWAITING_REGISTRATION)], now)
    check_invariants(q)


def test_terminal_states_are_absorbing() -> None:
    for terminal in (S.INELIGIBLE, S.OFFBOARDED, S.FAILED):
        p, now = walk(PATH_TO[terminal])
        assert apply_update(p, [rec(terminal)], now) == p
        for target in State:
            if target is terminal:
                continue
            with pytest.raises(LifecycleError):
                apply_update(p, [rec(target)], now)


def test_parse_records_rejects_times_out_of_range_as_a_timeline_error() -> None:
    with pytest.raises(InvalidTimeline):
        parse_records([{"state": "ACTIVE", "status": "IN_PROGRESS", "occurred_at": "nope"}])
    with pytest.raises(InvalidTimeline):
        parse_records(
            [
                {
                    "state": "ACTIVE",
                    "status": "IN_PROGRESS",
                    "occurred_at": "9999-12-31T23:59:59-23:00",
                }
            ]
        )
    (r,) = parse_records(
        [
            {
                "state": "SUSPENDED",
                "status": "IN_PROGRESS",
                "occurred_at": "2026-11-03T10:15:00.9+01:00",
                "suspension_reasons": ["OPERATOR_REQUEST", "OPERATOR_REQUEST"],
            }
        ]
    )
    assert r.occurred_at == T0
    assert r.suspension_reasons == (Reason.OPERATOR_REQUEST,)


# -- every invariant after every legal step, on random walks ---------------------------------


def _legal_targets(p: Participation) -> list[State]:
    history = p.history
    previous = history[-2].state.value if len(history) >= 2 else None
    return [
        s
        for s in State
        if _legal(p.current_state.value, s.value, previous) and s is not p.current_state
    ] + ([S.SUSPENDED] if p.current_state is S.SUSPENDED else [])


@pytest.mark.parametrize("seed", range(40))
def test_random_legal_walks_keep_every_invariant_and_append_only_history(seed: int) -> None:
    rng = random.Random(seed)
    p = fresh()
    now = T0
    check_invariants(p)
    for _ in range(25):
        targets = _legal_targets(p)
        if not targets:
            break
        target = rng.choice(targets)
        reasons: tuple[Reason, ...] = ()
        if target is S.SUSPENDED:
            options = [r for r in Reason if (r,) != p.current.suspension_reasons]
            reasons = (rng.choice(options),)
        now += timedelta(minutes=rng.randint(0, 600))
        record = rec(target, reasons)
        if rng.random() < 0.3:
            record = rec(target, reasons, occurred_at=now - timedelta(seconds=rng.randint(0, 30)))
            if record.occurred_at is not None and record.occurred_at < p.current.occurred_at:  # type: ignore[operator]
                record = rec(target, reasons)
        q = apply_update(p, [record], now)
        check_invariants(q)
        # History is append-only: the earlier past is a prefix of the new one.
        old_past = [(e.state, e.occurred_at, e.suspension_reasons) for e in p.history]
        new_past = [(e.state, e.occurred_at, e.suspension_reasons) for e in q.history]
        assert new_past[: len(old_past)] == old_past
        assert q.time_updated >= p.time_updated
        p = q


def test_a_time_the_server_assigns_never_goes_back() -> None:
    """A writer that read the clock before another one stored a later second still appends in
    order: without occurred_at the new entry takes the later of now and the current entry."""
    p = apply_update(fresh(), [rec(S.AWAITING_CUSTOMER_CONSENT)], T0 + timedelta(seconds=5))
    late = apply_update(p, [rec(S.AWAITING_DEVICE_TELEMETRY)], T0 + timedelta(seconds=4))
    assert late.current.occurred_at == T0 + timedelta(seconds=5)
    with pytest.raises(InvalidTimeline, match="must not go back"):
        apply_update(
            p, [rec(S.AWAITING_DEVICE_TELEMETRY, occurred_at=T0 + timedelta(seconds=4))],
            T0 + timedelta(seconds=6),
        )

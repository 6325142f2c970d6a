"""The suite's own oracle: contract sections 3 and 4 (states, legal moves, expected paths).

Deliberately independent of ``mock_server``: the suites judge any implementation, the mock
included, against this table and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENDING",
    "HAPPY_PATH",
    "LEAVING_PATH",
    "MAX_HISTORY",
    "REASONS",
    "STATES",
    "TERMINAL",
    "TRANSITIONS",
    "Verdict",
    "allowed_after",
    "expected_path",
    "judge_update",
    "path_is_legal",
    "well_formed",
]

STATES: tuple[str, ...] = (
    "ENROLMENT_REQUESTED",
    "AWAITING_CUSTOMER_CONSENT",
    "AWAITING_DEVICE_TELEMETRY",
    "AWAITING_LOCATION_TELEMETRY",
    "CHECKING_ELIGIBILITY",
    "AWAITING_REGISTRATION",
    "REGISTERED",
    "ACTIVE",
    "SUSPENDED",
    "UNENROLMENT_REQUESTED",
    "WINDING_DOWN",
    "UNENROLLED",
    "INELIGIBLE",
    "OFFBOARDED",
    "FAILED",
)
REASONS: tuple[str, ...] = (
    "AWAITING_TELEMETRY",
    "AWAITING_DISPATCH",
    "AWAITING_CONSENT",
    "OPERATOR_REQUEST",
    "CUSTOMER_REQUEST",
)
TERMINAL = frozenset({"INELIGIBLE", "OFFBOARDED", "FAILED"})
# The spec's history bound (update operation, "History bound"): at most MAX_HISTORY COMPLETE
# and IN_PROGRESS entries; near it, only the moves that end a participation (ENDING).
MAX_HISTORY = 500
ENDING = frozenset({"UNENROLMENT_REQUESTED", "WINDING_DOWN", "UNENROLLED", "OFFBOARDED", "FAILED"})

# Contract section 4. The "back to the previous state" edge of UNENROLMENT_REQUESTED depends
# on history and is added by `allowed_after`.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "ENROLMENT_REQUESTED": frozenset({"AWAITING_CUSTOMER_CONSENT", "FAILED"}),
    "AWAITING_CUSTOMER_CONSENT": frozenset(
        {"AWAITING_DEVICE_TELEMETRY", "UNENROLMENT_REQUESTED", "FAILED"}
    ),
    "AWAITING_DEVICE_TELEMETRY": frozenset(
        {"AWAITING_LOCATION_TELEMETRY", "CHECKING_ELIGIBILITY", "UNENROLMENT_REQUESTED", "FAILED"}
    ),
    "AWAITING_LOCATION_TELEMETRY": frozenset(
        {"CHECKING_ELIGIBILITY", "UNENROLMENT_REQUESTED", "FAILED"}
    ),
    "CHECKING_ELIGIBILITY": frozenset({"AWAITING_REGISTRATION", "INELIGIBLE", "FAILED"}),
    "AWAITING_REGISTRATION": frozenset({"REGISTERED", "UNENROLMENT_REQUESTED", "FAILED"}),
    "REGISTERED": frozenset({"ACTIVE", "FAILED"}),
    "ACTIVE": frozenset({"SUSPENDED", "UNENROLMENT_REQUESTED"}),
    "SUSPENDED": frozenset({"ACTIVE", "SUSPENDED", "UNENROLMENT_REQUESTED"}),
    "UNENROLMENT_REQUESTED": frozenset({"WINDING_DOWN", "FAILED"}),
    "WINDING_DOWN": frozenset({"UNENROLLED", "FAILED"}),
    "UNENROLLED": frozenset({"OFFBOARDED"}),
    "INELIGIBLE": frozenset(),
    "OFFBOARDED": frozenset(),
    "FAILED": frozenset(),
}

HAPPY_PATH: tuple[str, ...] = (
    "ENROLMENT_REQUESTED",
    "AWAITING_CUSTOMER_CONSENT",
    "AWAITING_DEVICE_TELEMETRY",
    "CHECKING_ELIGIBILITY",
    "AWAITING_REGISTRATION",
    "REGISTERED",
    "ACTIVE",
)
LEAVING_PATH: tuple[str, ...] = (
    "UNENROLMENT_REQUESTED",
    "WINDING_DOWN",
    "UNENROLLED",
    "OFFBOARDED",
)


def allowed_after(state: str, before: str | None = None) -> frozenset[str]:
    """Legal next states after `state`; `before` is the state held just before it."""
    allowed = TRANSITIONS.get(state, frozenset())
    if state == "UNENROLMENT_REQUESTED" and before is not None:
        allowed = allowed | {before}
    return allowed


def path_is_legal(states: Sequence[str], before: str | None = None) -> int | None:
    """Index of the first illegal step of `states` (a walk), or None when every step is legal.

    `before` is the state held before ``states[0]`` (for a leading UNENROLMENT_REQUESTED).
    """
    previous = before
    for i in range(1, len(states)):
        if states[i] not in allowed_after(states[i - 1], previous):
            return i
        previous = states[i - 1]
    return None


def expected_path(state: str) -> tuple[str, ...]:
    """The contract's expected (PENDING) path after `state`, for information and the walk."""
    if state == "AWAITING_LOCATION_TELEMETRY":
        return HAPPY_PATH[HAPPY_PATH.index("CHECKING_ELIGIBILITY") :]
    if state in HAPPY_PATH[:-1]:
        return HAPPY_PATH[HAPPY_PATH.index(state) + 1 :]
    if state == "SUSPENDED":
        return ("ACTIVE",)
    if state in LEAVING_PATH:
        return LEAVING_PATH[LEAVING_PATH.index(state) + 1 :]
    return ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a correct implementation must answer to an update (contract section 6)."""

    status: int  # 200, 400 or 409
    new_state: str
    unchanged: bool
    reason: str


def _history(participation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [e for e in participation["participation_state"] if e.get("status") != "PENDING"]


def well_formed(records: Sequence[Mapping[str, Any]]) -> str | None:
    """Why `records` break the shape rules of contract §6 (a 400), or None."""
    statuses = [r.get("status") for r in records]
    if statuses.count("IN_PROGRESS") != 1:
        return f"{statuses.count('IN_PROGRESS')} IN_PROGRESS records, expected exactly 1"
    pivot = statuses.index("IN_PROGRESS")
    if any(s != "COMPLETE" for s in statuses[:pivot]):
        return "records before the IN_PROGRESS one must be COMPLETE"
    if any(s != "PENDING" for s in statuses[pivot + 1 :]):
        return "records after the IN_PROGRESS one must be PENDING"
    for r in records:
        if r.get("state") != "SUSPENDED" and r.get("suspension_reasons"):
            return f"{r.get('state')} record with suspension_reasons"
    return None


def judge_update(
    participation: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> Verdict:
    """The verdict for `records` (server-defaulted times) on `participation`.

    Rejections: a malformed body is a 400, an illegal move a 409. When a body is both, the
    contract does not say which comes first: `Verdict.status` is then the 409.
    """
    history = _history(participation)
    current = history[-1]
    state = str(current["state"])
    before = str(history[-2]["state"]) if len(history) > 1 else None
    shape = well_formed(records)
    if shape is not None:
        return Verdict(400, state, True, shape)
    steps = [r for r in records if r.get("status") != "PENDING"]
    head = steps[0]
    if len(steps) == 1 and head["state"] == state:
        same = state != "SUSPENDED" or set(head.get("suspension_reasons") or ()) == set(
            current.get("suspension_reasons") or ()
        )
        if same:
            return Verdict(200, state, True, "idempotent resubmission of the current state")
    walk = [state, *(str(r["state"]) for r in steps)]
    bad = path_is_legal(walk, before)
    if bad is not None:
        frm, to = walk[bad - 1], walk[bad]
        return Verdict(409, state, True, f"{frm} -> {to} is not a legal transition")
    # A SUSPENDED record without reasons is only fine when it cancels a leave request.
    previous: str | None = before
    for i, r in enumerate(steps, start=1):
        if r["state"] == "SUSPENDED" and not r.get("suspension_reasons"):
            restoring = walk[i - 1] == "UNENROLMENT_REQUESTED" and previous == "SUSPENDED"
            if not restoring:
                return Verdict(400, state, True, "SUSPENDED without suspension_reasons")
        previous = walk[i - 1]
    # The history bound (spec, update operation): past MAX_HISTORY - 4 entries only the moves
    # that end a participation are taken.
    if len(history) + len(steps) > MAX_HISTORY - len(LEAVING_PATH) and any(
        r["state"] not in ENDING for r in steps
    ):
        return Verdict(409, state, True, f"the history is full ({len(history)} entries)")
    return Verdict(200, str(steps[-1]["state"]), False, "legal transition")

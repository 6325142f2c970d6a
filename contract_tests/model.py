"""The suite's own oracle: contract sections 3 and 4 (states, legal moves, expected paths).

Deliberately independent of ``mock_server``: the suites judge any implementation, the mock
included, against this table and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ENDING",
    "HAPPY_PATH",
    "ILLEGAL_MOVES",
    "LEAVING_PATH",
    "LEGAL_EDGES",
    "MAX_HISTORY",
    "REASONS",
    "RETURNABLE",
    "STATES",
    "STATUSES",
    "TERMINAL",
    "TRANSITIONS",
    "Verdict",
    "allowed_after",
    "expected_path",
    "first_illegal_step",
    "judge_update",
    "new_edges",
    "normalise_time",
    "path_is_legal",
    "telemetry_expected",
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
STATUSES: tuple[str, ...] = ("COMPLETE", "IN_PROGRESS", "PENDING")
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


# States a leave request can come from, and so return to when it is cancelled.
RETURNABLE: tuple[str, ...] = tuple(
    s for s in STATES if "UNENROLMENT_REQUESTED" in TRANSITIONS[s]
)

# Every move the table allows (30) plus the six "cancel the leave request" returns: 36 edges.
LEGAL_EDGES: tuple[tuple[str, str], ...] = tuple(
    (a, b) for a in STATES for b in STATES if b in TRANSITIONS[a]
) + tuple(("UNENROLMENT_REQUESTED", r) for r in RETURNABLE)

# Every move to another state that the table forbids (181). From UNENROLMENT_REQUESTED a return
# to a state other than the one held just before the request is illegal, so those count here
# too (tried only when the participation came from elsewhere).
ILLEGAL_MOVES: tuple[tuple[str, str], ...] = tuple(
    (a, b)
    for a in STATES
    for b in STATES
    if b != a
    and b not in TRANSITIONS[a]
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
    for i, r in enumerate(records):
        if r.get("state") != "SUSPENDED" and r.get("suspension_reasons"):
            return f"{r.get('state')} record with suspension_reasons"
        if r.get("status") == "PENDING" and r.get("occurred_at") is not None:
            return f"participation_state[{i}] is PENDING with occurred_at"
        if r.get("status") != "PENDING" and r.get("expected_at") is not None:
            return f"participation_state[{i}] is {r.get('status')} with expected_at"
    return None


def _times_go_back(times: Sequence[str | None], floor: str | None) -> bool:
    """Sent times (normalised, None where defaulted) go back, or start before `floor`."""
    last = floor
    for at in times:
        if at is None:
            continue
        if last is not None and at < last:
            return True
        last = at
    return False


def _pending_verdict(
    pending: Sequence[Mapping[str, Any]], walk: Sequence[str], floor: str | None
) -> str | None:
    """Why the PENDING records are a 400: not a legal path, no reasons, or times going back."""
    if not pending:
        return None
    if walk[-1] in TERMINAL:
        return f"PENDING records after the terminal {walk[-1]}"
    path = [walk[-1], *(str(r.get("state")) for r in pending)]
    bad = path_is_legal(path, walk[-2] if len(walk) > 1 else None)
    if bad is not None:
        return f"PENDING path {path[bad - 1]} -> {path[bad]} is not a legal path"
    if any(r.get("state") == "SUSPENDED" and not r.get("suspension_reasons") for r in pending):
        return "a SUSPENDED PENDING record without suspension_reasons"
    if _times_go_back([normalise_time(r.get("expected_at")) for r in pending], floor):
        return "PENDING expected_at goes back in time or comes before the current state"
    return None


def judge_update(
    participation: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> Verdict:
    """The verdict for `records` on `participation`.

    Rejections: a malformed body is a 400, an illegal move a 409. When a body is both, the
    contract does not say which comes first: `Verdict.status` is then the 409. Sent times are
    judged against the view's times only: whether one is in the future depends on the server's
    clock, which the verdict cannot know (a 200 verdict with sent times is "acceptable", not
    "required").
    """
    history = _history(participation)
    current = history[-1]
    state = str(current["state"])
    before = str(history[-2]["state"]) if len(history) > 1 else None
    current_at = normalise_time(current.get("occurred_at"))
    shape = well_formed(records)
    if shape is not None:
        return Verdict(400, state, True, shape)
    steps = [r for r in records if r.get("status") != "PENDING"]
    pending = [r for r in records if r.get("status") == "PENDING"]
    head = steps[0]
    if len(steps) == 1 and head["state"] == state:
        same = state != "SUSPENDED" or set(head.get("suspension_reasons") or ()) == set(
            current.get("suspension_reasons") or ()
        )
        if same:
            walk = [before, state] if before is not None else [state]
            why = _pending_verdict(pending, walk, current_at)
            if why is not None:
                return Verdict(400, state, True, why)
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
    sent = [normalise_time(r.get("occurred_at")) for r in steps]
    if _times_go_back(sent, current_at):
        return Verdict(400, state, True, "occurred_at goes back in time")
    floor = next((at for at in reversed(sent) if at is not None), current_at)
    full = [before, *walk] if before is not None else walk
    why = _pending_verdict(pending, full, floor)
    if why is not None:
        return Verdict(400, state, True, why)
    return Verdict(200, str(steps[-1]["state"]), False, "legal transition")


def first_illegal_step(
    participation: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> tuple[str, str] | None:
    """The first (from, to) move of `records` the table forbids, or None (shape not judged)."""
    history = _history(participation)
    state = str(history[-1]["state"])
    before = str(history[-2]["state"]) if len(history) > 1 else None
    steps = [str(r.get("state")) for r in records if r.get("status") != "PENDING"]
    if steps == [state]:
        return None  # a resubmission, not a move
    walk = [state, *steps]
    bad = path_is_legal(walk, before)
    return (walk[bad - 1], walk[bad]) if bad is not None else None


def new_edges(old: Sequence[str], new: Sequence[str]) -> list[tuple[str, str]]:
    """Moves taken between two views of one history (`old` a prefix of `new`), in order."""
    if len(new) <= len(old) or list(new[: len(old)]) != list(old) or not old:
        return []
    return [(new[i - 1], new[i]) for i in range(len(old), len(new))]


def telemetry_expected(history: Sequence[Mapping[str, Any]]) -> bool:
    """The spec's `telemetry_active`: from the end of AWAITING_DEVICE_TELEMETRY until suspended
    for AWAITING_TELEMETRY, UNENROLLED or a terminal state (history: past entries, oldest
    first)."""
    current = history[-1]
    state = current.get("state")
    if state == "UNENROLLED" or state in TERMINAL:
        return False
    reasons = current.get("suspension_reasons") or []
    if state == "SUSPENDED" and "AWAITING_TELEMETRY" in reasons:
        return False
    # Back in AWAITING_DEVICE_TELEMETRY (a cancelled leave request): waiting again.
    waits = [i for i, e in enumerate(history) if e.get("state") == "AWAITING_DEVICE_TELEMETRY"]
    return bool(waits) and waits[-1] != len(history) - 1


def normalise_time(value: Any) -> str | None:
    """A sent RFC 3339 time as the server must store it: UTC, whole seconds, `Z`; else None."""
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Contract section 5 single-object invariants (rules 1-9), checked on a participation's JSON.

An independent oracle for the fixture tests: its own transition table, copied from the contract
(section 4), not imported from the lifecycle that generated the data.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = ["EDGES", "STATES", "check_participation", "history_edges"]

STATES = (
    "ENROLMENT_REQUESTED",
    "AWAITING_CUSTOMER_CONSENT",
    "AWAITING_DEVICE_TELEMETRY",
    "AWAITING_LOCATION_TELEMETRY",
    "CHECKING_ELIGIBILITY",
    "AWAITING_REGISTRATION",
    "REGISTERED",
    "INELIGIBLE",
    "ACTIVE",
    "SUSPENDED",
    "UNENROLMENT_REQUESTED",
    "WINDING_DOWN",
    "UNENROLLED",
    "OFFBOARDED",
    "FAILED",
)
_T = {
    "ENROLMENT_REQUESTED": "AWAITING_CUSTOMER_CONSENT FAILED",
    "AWAITING_CUSTOMER_CONSENT": "AWAITING_DEVICE_TELEMETRY UNENROLMENT_REQUESTED FAILED",
    "AWAITING_DEVICE_TELEMETRY": "AWAITING_LOCATION_TELEMETRY CHECKING_ELIGIBILITY "
    "UNENROLMENT_REQUESTED FAILED",
    "AWAITING_LOCATION_TELEMETRY": "CHECKING_ELIGIBILITY UNENROLMENT_REQUESTED FAILED",
    "CHECKING_ELIGIBILITY": "AWAITING_REGISTRATION INELIGIBLE FAILED",
    "AWAITING_REGISTRATION": "REGISTERED UNENROLMENT_REQUESTED FAILED",
    "REGISTERED": "ACTIVE FAILED",
    "ACTIVE": "SUSPENDED UNENROLMENT_REQUESTED",
    "SUSPENDED": "ACTIVE SUSPENDED UNENROLMENT_REQUESTED",
    "UNENROLMENT_REQUESTED": "WINDING_DOWN FAILED",
    "WINDING_DOWN": "UNENROLLED FAILED",
    "UNENROLLED": "OFFBOARDED",
    "INELIGIBLE": "",
    "OFFBOARDED": "",
    "FAILED": "",
}
TRANSITIONS: Mapping[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in _T.items()}
_LEAVE = "UNENROLMENT_REQUESTED"
TERMINAL = frozenset({"INELIGIBLE", "OFFBOARDED", "FAILED"})
# Every edge of the table, plus the cancelled leave request back to each state it can follow.
EDGES: frozenset[tuple[str, str]] = frozenset(
    {(a, b) for a, bs in TRANSITIONS.items() for b in bs}
    | {("UNENROLMENT_REQUESTED", a) for a, bs in TRANSITIONS.items() if _LEAVE in bs}
)
_ID = re.compile(r"^vpp_[0-9a-f]{24}$")


def _t(text: str) -> datetime:
    assert text.endswith("Z"), f"{text} is not UTC with a Z"
    return datetime.fromisoformat(text[:-1] + "+00:00")


def _legal(frm: str, to: str, before: str | None) -> bool:
    return to in TRANSITIONS[frm] or (frm == "UNENROLMENT_REQUESTED" and to == before)


def history_edges(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (from, to) pairs of consecutive COMPLETE/IN_PROGRESS entries."""
    past = [e["state"] for e in doc["participation_state"] if e["status"] != "PENDING"]
    return list(itertools.pairwise(past))


def check_participation(
    doc: Mapping[str, Any], *, live_mode: bool | None = None, account_id: str | None = None
) -> None:
    """Raise AssertionError naming the participation and the rule it breaks."""
    pid = doc.get("id")
    entries: Sequence[Mapping[str, Any]] = doc["participation_state"]
    statuses = [e["status"] for e in entries]
    current = doc["current_state"]

    def ensure(ok: bool, rule: int, why: str) -> None:
        assert ok, f"{pid}: rule {rule}: {why}"

    running = [e for e in entries if e["status"] == "IN_PROGRESS"]
    ensure(len(running) == 1 and running[0]["state"] == current, 1, "one IN_PROGRESS = current")
    order = {"COMPLETE": 0, "IN_PROGRESS": 1, "PENDING": 2}
    ensure(statuses == sorted(statuses, key=order.__getitem__), 2, f"order {statuses}")
    past = [e for e in entries if e["status"] != "PENDING"]
    pending = [e for e in entries if e["status"] == "PENDING"]
    ensure(past[0]["state"] == "ENROLMENT_REQUESTED", 3, "first entry is ENROLMENT_REQUESTED")
    before: str | None = None
    for a, b in itertools.pairwise(past):
        ensure(_legal(a["state"], b["state"], before), 3, f"{a['state']} -> {b['state']}")
        before = a["state"] if b["state"] == "UNENROLMENT_REQUESTED" else None
    ensure(not (current in TERMINAL and pending), 4, "terminal with a PENDING tail")
    state = current
    for e in pending:
        ensure(_legal(state, e["state"], before), 4, f"tail {state} -> {e['state']}")
        before = state if e["state"] == "UNENROLMENT_REQUESTED" else None
        state = e["state"]
    times = [_t(e["occurred_at"]) for e in past if "occurred_at" in e]
    ensure(len(times) == len(past), 5, "every past entry has occurred_at")
    ensure(times == sorted(times), 5, "occurred_at non-decreasing")
    ensure(all("occurred_at" not in e for e in pending), 5, "PENDING without occurred_at")
    expected = [_t(e["expected_at"]) for e in pending if "expected_at" in e]
    ensure(expected == sorted(expected), 5, "expected_at non-decreasing")
    ensure(all(x >= times[-1] for x in expected), 5, "expected_at not before the current entry")
    created, updated = _t(doc["time_created"]), _t(doc["time_updated"])
    ensure(all(created <= x <= updated for x in times), 6, "time_created <= occurred <= updated")
    ensure(doc["control_active"] == (current == "ACTIVE"), 7, "control_active iff ACTIVE")
    reasons = doc["suspension_reasons"]
    ensure(bool(reasons) == (current == "SUSPENDED"), 8, "reasons iff SUSPENDED")
    ensure(len(set(reasons)) == len(reasons), 8, "no duplicate reasons")
    ensure(reasons == running[0]["suspension_reasons"], 8, "reasons equal the current entry's")
    ensure(
        all(not e["suspension_reasons"] for e in entries if e["state"] != "SUSPENDED"),
        8,
        "only SUSPENDED entries have reasons",
    )
    ensure(bool(_ID.match(str(pid))), 9, "id is vpp_ + 24 hex")
    ensure(doc["object"] == "vpp-participation", 9, "object")
    if live_mode is not None:
        ensure(doc["live_mode"] is live_mode, 9, "live_mode matches the namespace")
    if account_id is not None:
        ensure(doc["account_id"] == account_id, 9, "account_id matches the namespace")

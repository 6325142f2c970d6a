"""Checks of a response against its request and what was seen before: rules 10-14, §4 (the
expected path) and §6 (request semantics). Each is registered with its rule."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from vpp_sandbox.contract_tests import model, schemas
from vpp_sandbox.contract_tests.findings import broken
from vpp_sandbox.contract_tests.ledger import Identity, Observation, Seen
from vpp_sandbox.contract_tests.object_checks import (
    VPP_OPERATIONS,
    history,
    response_check,
    tail,
)

__all__ = [
    "created_as_requested",
    "history_is_append_only",
    "illegal_update_rejected",
    "invalid_request_refused",
    "namespaces_are_isolated",
    "own_participation_found",
    "pending_tail_is_expected",
    "reads_return_last_write",
    "resubmission_changes_nothing",
    "time_updated_never_goes_back",
    "unauthenticated_request_rejected",
    "update_appends_sent_records",
]


def _own(obs: Observation, seen: Seen | None) -> bool:
    return seen is not None and obs.identity is not None and seen.owner == obs.identity


def _own_views(obs: Observation) -> Iterator[tuple[Mapping[str, Any], Seen]]:
    """Each participation in the answer that this namespace made, with what was seen of it."""
    for p in obs.participations():
        seen = obs.before.get(str(p.get("id")))
        if seen is not None and _own(obs, seen):
            yield p, seen


def _ns(identity: Identity) -> str:
    return f"{identity.account_id}/{'live' if identity.live_mode else 'test'}"


def _entry_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    reasons = entry.get("suspension_reasons") or []
    return (
        entry.get("state"),
        entry.get("occurred_at"),
        entry.get("description"),
        tuple(sorted(map(str, reasons))) if isinstance(reasons, list) else reasons,
    )


def _is_history_prefix(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Old COMPLETE/IN_PROGRESS entries reappear first in new, in order (status may complete)."""
    before, after = history(old), history(new)
    if len(after) < len(before):
        return False
    for i, entry in enumerate(before):
        if _entry_key(entry) != _entry_key(after[i]):
            return False
        if entry.get("status") == "COMPLETE" and after[i].get("status") != "COMPLETE":
            return False
    return True


def _records(obs: Observation) -> list[dict[str, Any]] | None:
    """The update's records when the request is schema-valid (the oracle's precondition)."""
    ex = obs.exchange
    if obs.operation != "updateVppParticipation" or not isinstance(ex.body, dict):
        return None
    ctype = next((v for k, v in ex.headers.items() if k.lower() == "content-type"), "")
    if not ctype.lower().startswith("application/json"):
        return None  # not a JSON request: a 415 is its answer, whatever the bytes say
    if schemas.request_problem(obs.operation, ex.body, {}) is not None:
        return None
    records = ex.body.get("participation_state")
    return records if isinstance(records, list) else None


def _update(obs: Observation) -> tuple[Seen, list[dict[str, Any]], model.Verdict] | None:
    """For an update of an own, known participation: what was seen, the records, the verdict."""
    records = _records(obs)
    seen = obs.before.get(str(obs.path_id))
    if records is None or seen is None or not _own(obs, seen):
        return None
    try:
        verdict = model.judge_update(seen.view, records)
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return seen, records, verdict


def _accepted(obs: Observation) -> dict[str, Any] | None:
    """The participation of a 2xx answer, if it is one."""
    if not 200 <= obs.exchange.status < 300:
        return None
    return next(obs.participations(), None)


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


# -- rules 10-13: across requests -------------------------------------------------------------


@response_check("10")
def reads_return_last_write(obs: Observation) -> bool:
    """Rule 10: a retrieve or list item equals the last create/update response (or is newer)."""
    if obs.operation not in ("retrieveVppParticipation", "listVppParticipations"):
        return False
    judged = False
    for p, seen in _own_views(obs):
        if seen.write is None:
            continue
        judged = True
        if p == seen.write:
            continue
        newer = str(p.get("time_updated")) > str(seen.write.get("time_updated")) and (
            _is_history_prefix(seen.write, p)
        )
        if not newer:
            raise broken(
                p.get("id"),
                f"{obs.operation} differs from the last write in {_differences(p, seen.write)} "
                "without a later change",
            )
    return judged


@response_check("10")
def own_participation_found(obs: Observation) -> bool:
    """Rule 10: a participation this namespace created is never a 404 to it."""
    seen = obs.before.get(str(obs.path_id))
    if obs.path_id is None or not _own(obs, seen):
        return False
    if obs.exchange.status == 404:
        raise broken(obs.path_id, f"{obs.operation} answered 404 for a participation of this "
                                  "namespace")
    return True


@response_check("11")
def history_is_append_only(obs: Observation) -> bool:
    """Rule 11: the COMPLETE/IN_PROGRESS history seen before is a prefix of every later view."""
    judged = False
    for p, seen in _own_views(obs):
        judged = True
        if not _is_history_prefix(seen.view, p):
            old = [e.get("state") for e in history(seen.view)]
            new = [e.get("state") for e in history(p)]
            raise broken(p.get("id"), f"history {old} was rewritten as {new}")
    return judged


@response_check("§2")
def time_updated_never_goes_back(obs: Observation) -> bool:
    """§2: a participation's time_updated never goes back from one view to the next."""
    judged = False
    for p, seen in _own_views(obs):
        judged = True
        now = model.normalise_time(p.get("time_updated"))
        then = model.normalise_time(seen.view.get("time_updated"))
        if now is not None and then is not None and now < then:
            raise broken(p.get("id"), f"time_updated went back from {then} to {now}")
    return judged


_SIMPLE_KEYS = frozenset({"state", "status", "suspension_reasons", "description"})


def _simple(records: Sequence[Mapping[str, Any]]) -> bool:
    """Records without times: the answer is fully determined by the view (contract §6)."""
    return all(set(r) <= _SIMPLE_KEYS for r in records)


@response_check("12")
def illegal_update_rejected(obs: Observation) -> bool:
    """Rule 12: updates are accepted or rejected as the transition table says; a rejection
    changes nothing."""
    ex = obs.exchange
    pid = obs.path_id
    seen = obs.before.get(str(pid))
    if not _own(obs, seen) or seen is None:
        return False
    if seen.rejected and obs.operation == "retrieveVppParticipation":
        for p in obs.participations():
            if p != seen.view:
                raise broken(pid, "a rejected update changed the participation: "
                                  f"{_differences(p, seen.view)}")
        return True
    judged = _update(obs)
    if judged is None:
        return False
    _, records, verdict = judged
    accepted = 200 <= ex.status < 300
    code = ex.data.get("code") if isinstance(ex.data, dict) else None
    if verdict.status == 409 and accepted:
        raise broken(pid, f"update accepted ({ex.status}) but {verdict.reason}")
    if verdict.status == 400 and accepted:
        raise broken(pid, f"accepted a malformed update ({verdict.reason})")
    if ex.status in (401, 404, 429) or ex.status >= 500:
        return True
    if verdict.status == 200 and not accepted and _simple(records):
        raise broken(pid, f"answered {ex.status} to a {verdict.reason}")
    # One record: the move alone decides (a SUSPENDED record without reasons may be a 400).
    single = len(records) == 1 and (
        records[0].get("state") != "SUSPENDED" or bool(records[0].get("suspension_reasons"))
    )
    if verdict.status == 409 and ex.status != 409 and single:
        raise broken(pid, f"answered {ex.status}, not 409, to {verdict.reason}")
    if verdict.status == 409 and ex.status == 409 and code != "invalid_state_transition":
        raise broken(pid, f"409 for {verdict.reason} has code {code!r}, not "
                          "invalid_state_transition")
    if verdict.status == 400 and ex.status == 400 and code not in (
        "participation_state_invalid", "invalid_request_body"
    ):
        raise broken(pid, f"400 for {verdict.reason} has code {code!r}, not "
                          "participation_state_invalid")
    if accepted:
        for p in obs.participations():
            if p.get("current_state") != verdict.new_state:
                raise broken(
                    pid,
                    f"accepted a move to {verdict.new_state} but current_state is "
                    f"{p.get('current_state')}",
                )
    return True


@response_check("13")
def namespaces_are_isolated(obs: Observation) -> bool:
    """Rule 13: no response shows a participation created in another account or mode, and an
    id of another namespace is a 404."""
    if obs.identity is None:
        return False
    judged = False
    for p in obs.participations():
        seen = obs.before.get(str(p.get("id")))
        if seen is None or seen.owner is None:
            continue
        judged = True
        if seen.owner != obs.identity:
            raise broken(
                p.get("id"),
                f"created by {_ns(seen.owner)} but visible to {_ns(obs.identity)} "
                f"({obs.operation} {obs.exchange.status})",
            )
    seen = obs.before.get(str(obs.path_id))
    owner = seen.owner if seen is not None else None
    status = obs.exchange.status
    if owner is not None and owner != obs.identity:
        judged = True
        if status not in (404, 401, 429) and status < 500:
            raise broken(
                obs.path_id,
                f"{obs.operation} by {_ns(obs.identity)} answered {status}; an id of "
                f"{_ns(owner)} must be a 404",
            )
    return judged


@response_check("14")
def unauthenticated_request_rejected(obs: Observation) -> bool:
    """Rule 14: a VPP operation without a valid bearer token is a 401."""
    if obs.operation not in VPP_OPERATIONS or obs.identity is not None:
        return False
    if obs.exchange.status != 401:
        ex = obs.exchange
        raise broken(
            obs.path_id or "-",
            f"{ex.method} {ex.path} without a valid token answered {ex.status}, not 401",
        )
    return True


# -- §4 and §6: what an accepted request must have done -----------------------------------------


def _sent_entry_problem(entry: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """How a stored entry differs from the record sent for it (only what the record set)."""
    if entry.get("state") != record.get("state"):
        return f"state {entry.get('state')}, sent {record.get('state')}"
    for key in ("occurred_at", "expected_at"):
        sent = model.normalise_time(record.get(key))
        if sent is not None and entry.get(key) != sent:
            return f"{key} {entry.get(key)}, sent {record.get(key)} (stored as {sent})"
    reasons = record.get("suspension_reasons")
    if reasons and sorted(entry.get("suspension_reasons") or []) != sorted(reasons):
        return f"suspension_reasons {entry.get('suspension_reasons')}, sent {reasons}"
    if record.get("description") is not None and entry.get("description") != record.get(
        "description"
    ):
        return f"description {entry.get('description')!r}, sent {record.get('description')!r}"
    return None


@response_check("§4")
def pending_tail_is_expected(obs: Observation) -> bool:
    """§4 and §6: the PENDING tail is the PENDING records sent, or, when none were sent, the
    contract's expected path from the new current state (a new participation: the happy path)."""
    p = _accepted(obs)
    if p is None:
        return False
    pid = p.get("id")
    got = [str(e.get("state")) for e in tail(p)]
    if obs.operation == "createVppParticipation":
        want = list(model.expected_path("ENROLMENT_REQUESTED"))
        if got != want:
            raise broken(pid, f"a new participation forecasts {got}, expected {want}")
        return True
    judged = _update(obs)
    if judged is None or judged[2].status != 200:
        return False
    _, records, verdict = judged
    sent = [r for r in records if r.get("status") == "PENDING"]
    if sent:
        if got != [str(r.get("state")) for r in sent]:
            raise broken(pid, f"the PENDING tail is {got}, but the update sent "
                              f"{[r.get('state') for r in sent]}")
        for entry, record in zip(tail(p), sent, strict=True):
            problem = _sent_entry_problem(entry, record)
            if problem is not None:
                raise broken(pid, f"PENDING {entry.get('state')}: {problem}")
        return True
    if verdict.unchanged:
        return False  # a resubmission keeps the tail (resubmission_changes_nothing)
    want = list(model.expected_path(verdict.new_state))
    if got != want:
        raise broken(pid, f"after a move to {verdict.new_state} the forecast is {got}, "
                          f"expected {want}")
    return True


@response_check("§6")
def created_as_requested(obs: Observation) -> bool:
    """§6: a create is a 201 of a participation in ENROLMENT_REQUESTED (one entry) with the
    device, provider, programme and reference sent, time_updated equal to time_created."""
    if obs.operation != "createVppParticipation" or not isinstance(obs.exchange.body, dict):
        return False
    p = _accepted(obs)
    if p is None:
        return False
    body, ex = obs.exchange.body, obs.exchange
    pid = p.get("id")
    if ex.status != 201:
        raise broken(pid, f"create answered {ex.status}, not 201")
    past = [(e.get("state"), e.get("status")) for e in history(p)]
    if past != [("ENROLMENT_REQUESTED", "IN_PROGRESS")]:
        raise broken(pid, f"a new participation's history is {past}, not one "
                          "ENROLMENT_REQUESTED IN_PROGRESS entry")
    provider = p["provider"] if isinstance(p.get("provider"), dict) else {}
    programme = p["programme"] if isinstance(p.get("programme"), dict) else {}
    pairs = (
        ("device_id", p.get("device_id"), body.get("device_id")),
        ("provider.id", provider.get("id"), body.get("provider_id")),
        ("programme.id", programme.get("id"), body.get("programme_id")),
        ("reference_id", p.get("reference_id"), body.get("reference_id")),
    )
    for name, got, sent in pairs:
        if got != sent:
            raise broken(pid, f"{name} is {got!r}, but the create sent {sent!r}")
    if p.get("time_updated") != p.get("time_created"):
        raise broken(pid, f"time_updated {p.get('time_updated')} differs from time_created "
                          f"{p.get('time_created')} on a new participation")
    location = next((v for k, v in ex.response_headers.items() if k.lower() == "location"), None)
    if location is not None and not location.endswith(f"/vpp-participations/{pid}"):
        raise broken(pid, f"Location {location!r} is not the new participation's path")
    return True


@response_check("§6")
def update_appends_sent_records(obs: Observation) -> bool:
    """§6: an accepted move keeps the history, completes the old current entry and appends one
    entry per COMPLETE/IN_PROGRESS record, with the times, reasons and texts sent (a cancelled
    leave request back to SUSPENDED restores the reasons held before)."""
    p = _accepted(obs)
    judged = _update(obs) if p is not None else None
    if p is None or judged is None or judged[2].status != 200 or judged[2].unchanged:
        return False
    seen, records, _ = judged
    pid = p.get("id")
    old, new = history(seen.view), history(p)
    steps = [r for r in records if r.get("status") != "PENDING"]
    if len(new) != len(old) + len(steps):
        raise broken(pid, f"history has {len(new)} entries after {len(steps)} record(s) were "
                          f"added to {len(old)}")
    for i, entry in enumerate(old):
        want = {**entry, "status": "COMPLETE"} if i == len(old) - 1 else dict(entry)
        if dict(new[i]) != want:
            raise broken(pid, f"participation_state[{i}] ({entry.get('state')}) changed: "
                              f"{_differences(new[i], want)}")
    for j, record in enumerate(steps):
        at = len(old) + j
        entry = new[at]
        status = "IN_PROGRESS" if j == len(steps) - 1 else "COMPLETE"
        if entry.get("status") != status:
            raise broken(pid, f"participation_state[{at}] is {entry.get('status')}, not {status}")
        problem = _sent_entry_problem(entry, record)
        if problem is not None:
            raise broken(pid, f"participation_state[{at}]: {problem}")
        if record.get("state") == "SUSPENDED" and not record.get("suspension_reasons"):
            held = new[at - 2].get("suspension_reasons") if at >= 2 else None
            if sorted(entry.get("suspension_reasons") or []) != sorted(held or []):
                raise broken(pid, f"cancelling the leave request gave reasons "
                                  f"{entry.get('suspension_reasons')}, not the ones held before "
                                  f"({held})")
    return True


@response_check("§6")
def resubmission_changes_nothing(obs: Observation) -> bool:
    """§6: sending the current state again is a 200 that changes nothing (with PENDING records,
    only the expected path)."""
    p = _accepted(obs)
    judged = _update(obs) if p is not None else None
    if p is None or judged is None or judged[2].status != 200 or not judged[2].unchanged:
        return False
    seen, records, _ = judged
    if any(r.get("status") == "PENDING" for r in records):
        if history(p) != history(seen.view):
            raise broken(p.get("id"), "a resubmission with PENDING records changed the history")
        return True
    if p != seen.view:
        raise broken(p.get("id"), f"a resubmission of {p.get('current_state')} changed "
                                  f"{_differences(p, seen.view)}")
    return True


@response_check("§6")
def invalid_request_refused(obs: Observation) -> bool:
    """§6 and §7: a request that breaks the spec (a misspelt state, status or reason, a limit
    out of range, a malformed id) is refused, never acted on."""
    if obs.operation not in VPP_OPERATIONS:
        return False
    ex = obs.exchange
    problem = schemas.request_problem(obs.operation, ex.body, ex.query, obs.path_id)
    if problem is None:
        return False
    if 200 <= ex.status < 300:
        raise broken(obs.path_id or "-", f"{obs.operation} accepted ({ex.status}) a request "
                                         f"the spec rejects: {problem}")
    return True

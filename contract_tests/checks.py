"""One predicate per contract rule; each takes an Observation and raises AssertionError.

Every predicate is also registered as a Schemathesis check (same name), so it runs on every
response of the conformance and stateful phases, error responses included. A failure message
always starts ``rule N (check_name)`` and names the participation.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import schemathesis

from vpp_sandbox.contract_tests import model
from vpp_sandbox.contract_tests.ledger import (
    Identity,
    Ledger,
    Observation,
    Seen,
    basic_credentials,
    exchange_from_prepared,
)
from vpp_sandbox.contract_tests.target import Exchange

__all__ = [
    "CHECKS",
    "RULE_OF",
    "activate",
    "active_ledger",
    "check_exchange",
]

Check = Callable[[Observation], None]
F = TypeVar("F", bound=Check)
G = TypeVar("G", bound=Callable[..., None])

CHECKS: list[Check] = []
RULE_OF: dict[str, str] = {}
ID_PATTERN = re.compile(r"^vpp_[0-9a-f]{24}$")
TIME_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
VPP_OPERATIONS = (
    "createVppParticipation",
    "listVppParticipations",
    "retrieveVppParticipation",
    "updateVppParticipation",
)


def rule(number: str) -> Callable[[F], F]:
    """Register a predicate for contract rule `number`: "1".."15", or "§6"/"§7" (sections)."""

    def register(func: F) -> F:
        CHECKS.append(func)
        RULE_OF[func.__name__] = number
        return func

    return register


def walk_rule(number: str) -> Callable[[G], G]:
    """Name the rule of a predicate over several responses (not a per-response check)."""

    def register(func: G) -> G:
        RULE_OF[func.__name__] = number
        return func

    return register


def _fail(check: str, pid: object, message: str) -> AssertionError:
    return AssertionError(f"rule {RULE_OF[check]} ({check}): participation {pid}: {message}")


# -- defensive accessors (trap T13: only AssertionError may escape) ---------------------------


def _timeline(p: Mapping[str, Any], check: str) -> list[Mapping[str, Any]]:
    timeline = p.get("participation_state")
    if not isinstance(timeline, list) or not all(isinstance(e, dict) for e in timeline):
        raise _fail(check, p.get("id"), "participation_state is not a list of entries")
    return timeline


def _history(p: Mapping[str, Any], check: str) -> list[Mapping[str, Any]]:
    return [e for e in _timeline(p, check) if e.get("status") != "PENDING"]


def _time(value: Any, check: str, pid: object, what: str) -> datetime:
    if not isinstance(value, str) or not TIME_PATTERN.match(value):
        raise _fail(check, pid, f"{what} {value!r} is not an RFC 3339 UTC time ending in Z")
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00").astimezone(UTC)
    except ValueError:
        raise _fail(check, pid, f"{what} {value!r} is not a valid time") from None


def _entry_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    reasons = entry.get("suspension_reasons") or []
    return (
        entry.get("state"),
        entry.get("occurred_at"),
        entry.get("description"),
        tuple(sorted(map(str, reasons))) if isinstance(reasons, list) else reasons,
    )


def _is_history_prefix(old: Mapping[str, Any], new: Mapping[str, Any], check: str) -> bool:
    """Old COMPLETE/IN_PROGRESS entries reappear first in new, in order (status may complete)."""
    before, after = _history(old, check), _history(new, check)
    if len(after) < len(before):
        return False
    for i, entry in enumerate(before):
        if _entry_key(entry) != _entry_key(after[i]):
            return False
        if entry.get("status") == "COMPLETE" and after[i].get("status") != "COMPLETE":
            return False
    return True


# -- rules 1-9: one participation object ------------------------------------------------------


@rule("1")
def current_state_matches_timeline(obs: Observation) -> None:
    """Rule 1: exactly one IN_PROGRESS entry, and its state is `current_state`."""
    name = "current_state_matches_timeline"
    for p in obs.participations():
        current = [e for e in _timeline(p, name) if e.get("status") == "IN_PROGRESS"]
        if len(current) != 1:
            raise _fail(name, p.get("id"), f"{len(current)} IN_PROGRESS entries, expected 1")
        if current[0].get("state") != p.get("current_state"):
            raise _fail(
                name,
                p.get("id"),
                f"current_state {p.get('current_state')} but the IN_PROGRESS entry is "
                f"{current[0].get('state')}",
            )


@rule("2")
def timeline_is_ordered(obs: Observation) -> None:
    """Rule 2: COMPLETE entries, then the IN_PROGRESS one, then PENDING entries."""
    name = "timeline_is_ordered"
    rank = {"COMPLETE": 0, "IN_PROGRESS": 1, "PENDING": 2}
    for p in obs.participations():
        statuses = [e.get("status") for e in _timeline(p, name)]
        ranks = [rank.get(str(s), -1) for s in statuses]
        if -1 in ranks or ranks != sorted(ranks):
            raise _fail(name, p.get("id"), f"statuses out of order: {statuses}")


@rule("3")
def history_follows_transitions(obs: Observation) -> None:
    """Rule 3: the history starts at ENROLMENT_REQUESTED and every step is a legal transition."""
    name = "history_follows_transitions"
    for p in obs.participations():
        states = [str(e.get("state")) for e in _history(p, name)]
        if not states or states[0] != "ENROLMENT_REQUESTED":
            raise _fail(name, p.get("id"), f"history starts {states[:1]}, not ENROLMENT_REQUESTED")
        bad = model.path_is_legal(states)
        if bad is not None:
            raise _fail(
                name, p.get("id"), f"illegal step {states[bad - 1]} -> {states[bad]} in {states}"
            )


@rule("4")
def pending_tail_is_legal_path(obs: Observation) -> None:
    """Rule 4: the PENDING tail is a legal path from the current state; none after a terminal."""
    name = "pending_tail_is_legal_path"
    for p in obs.participations():
        timeline = _timeline(p, name)
        history = [str(e.get("state")) for e in timeline if e.get("status") != "PENDING"]
        tail = [str(e.get("state")) for e in timeline if e.get("status") == "PENDING"]
        if not history:
            continue
        if history[-1] in model.TERMINAL and tail:
            raise _fail(name, p.get("id"), f"terminal {history[-1]} has PENDING entries {tail}")
        before = history[-2] if len(history) > 1 else None
        walk = [history[-1], *tail]
        bad = model.path_is_legal(walk, before)
        if bad is not None:
            raise _fail(
                name, p.get("id"), f"PENDING path {walk} has illegal step at {walk[bad]}"
            )


@rule("5")
def timeline_times_are_ordered(obs: Observation) -> None:
    """Rule 5: past entries have non-decreasing occurred_at; PENDING ones expected_at after it."""
    name = "timeline_times_are_ordered"
    for p in obs.participations():
        pid = p.get("id")
        last: datetime | None = None
        current_at: datetime | None = None
        for i, e in enumerate(_timeline(p, name)):
            where = f"participation_state[{i}] ({e.get('state')} {e.get('status')})"
            if e.get("status") == "PENDING":
                if "occurred_at" in e and e["occurred_at"] is not None:
                    raise _fail(name, pid, f"{where} is PENDING but has occurred_at")
                if e.get("expected_at") is None:
                    raise _fail(name, pid, f"{where} is PENDING without expected_at")
                at = _time(e["expected_at"], name, pid, f"{where}.expected_at")
                if current_at is not None and at < current_at:
                    raise _fail(name, pid, f"{where} is expected before the current entry")
            else:
                at = _time(e.get("occurred_at"), name, pid, f"{where}.occurred_at")
                current_at = at
            if last is not None and at < last:
                raise _fail(name, pid, f"{where} goes back in time")
            last = at


@rule("6")
def entry_times_within_object_times(obs: Observation) -> None:
    """Rule 6: time_created <= occurred_at of every past entry <= time_updated."""
    name = "entry_times_within_object_times"
    for p in obs.participations():
        pid = p.get("id")
        created = _time(p.get("time_created"), name, pid, "time_created")
        updated = _time(p.get("time_updated"), name, pid, "time_updated")
        for e in _history(p, name):
            at = _time(e.get("occurred_at"), name, pid, f"{e.get('state')}.occurred_at")
            if not created <= at <= updated:
                raise _fail(
                    name,
                    pid,
                    f"{e.get('state')} occurred_at {e.get('occurred_at')} is outside "
                    f"[time_created {p.get('time_created')}, time_updated {p.get('time_updated')}]",
                )


@rule("7")
def control_active_iff_active(obs: Observation) -> None:
    """Rule 7: control_active is true exactly when current_state is ACTIVE."""
    name = "control_active_iff_active"
    for p in obs.participations():
        expected = p.get("current_state") == "ACTIVE"
        if p.get("control_active") is not expected:
            raise _fail(
                name,
                p.get("id"),
                f"control_active is {p.get('control_active')} in {p.get('current_state')}",
            )


@rule("8")
def suspension_reasons_match_state(obs: Observation) -> None:
    """Rule 8: reasons non-empty iff SUSPENDED, unique, equal to the IN_PROGRESS entry's."""
    name = "suspension_reasons_match_state"
    for p in obs.participations():
        pid = p.get("id")
        reasons = p.get("suspension_reasons")
        if not isinstance(reasons, list):
            raise _fail(name, pid, "suspension_reasons is not a list")
        suspended = p.get("current_state") == "SUSPENDED"
        if bool(reasons) is not suspended:
            raise _fail(name, pid, f"suspension_reasons {reasons} in {p.get('current_state')}")
        if len(set(map(str, reasons))) != len(reasons):
            raise _fail(name, pid, f"duplicate suspension_reasons {reasons}")
        for e in _timeline(p, name):
            got = e.get("suspension_reasons") or []
            if e.get("status") == "IN_PROGRESS" and sorted(map(str, got)) != sorted(
                map(str, reasons)
            ):
                raise _fail(name, pid, f"IN_PROGRESS entry has reasons {got}, object {reasons}")
            if got and e.get("state") != "SUSPENDED":
                raise _fail(name, pid, f"{e.get('state')} entry carries reasons {got}")


def _jwt_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


@rule("9")
def identity_matches_token(obs: Observation) -> None:
    """Rule 9: id and object well-formed; live_mode and account_id are the token's."""
    name = "identity_matches_token"
    ex = obs.exchange
    if obs.operation == "createBearerToken" and ex.status == 200 and isinstance(ex.data, dict):
        auth = next((v for k, v in ex.headers.items() if k.lower() == "authorization"), "")
        creds = basic_credentials(auth)
        if creds is not None:
            account, key = creds
            live = key.startswith("sk_live_")
            if ex.data.get("live_mode") is not live:
                raise _fail(name, "-", f"login with a {key[:8]}… key gave live_mode "
                                       f"{ex.data.get('live_mode')}")
            claims = _jwt_claims(str(ex.data.get("bearer_token", "")))
            if claims is not None and (
                claims.get("account_id") != account or claims.get("live_mode") is not live
            ):
                raise _fail(name, "-", f"token claims {claims} do not match {account}/{key[:8]}…")
        return
    for p in obs.participations():
        pid = p.get("id")
        if not isinstance(pid, str) or not ID_PATTERN.match(pid):
            raise _fail(name, pid, "id does not match ^vpp_[0-9a-f]{24}$")
        if p.get("object") != "vpp-participation":
            raise _fail(name, pid, f"object is {p.get('object')!r}")
        if obs.identity is not None:
            if p.get("live_mode") is not obs.identity.live_mode:
                raise _fail(
                    name,
                    pid,
                    f"live_mode {p.get('live_mode')} for a token with live_mode "
                    f"{obs.identity.live_mode}",
                )
            if p.get("account_id") != obs.identity.account_id:
                raise _fail(
                    name,
                    pid,
                    f"account_id {p.get('account_id')} for a token of {obs.identity.account_id}",
                )


# -- rules 10-15: across requests ----------------------------------------------------------


def _own(obs: Observation, seen: Seen | None) -> bool:
    return seen is not None and obs.identity is not None and seen.owner == obs.identity


@rule("10")
def reads_return_last_write(obs: Observation) -> None:
    """Rule 10: a retrieve or list item equals the last create/update response (or is newer)."""
    name = "reads_return_last_write"
    if obs.operation not in ("retrieveVppParticipation", "listVppParticipations"):
        return
    for p in obs.participations():
        seen = obs.before.get(str(p.get("id")))
        if not _own(obs, seen) or seen is None or seen.write is None or p == seen.write:
            continue
        newer = str(p.get("time_updated")) > str(seen.write.get("time_updated")) and (
            _is_history_prefix(seen.write, p, name)
        )
        if not newer:
            changed = sorted(k for k in set(p) | set(seen.write) if p.get(k) != seen.write.get(k))
            raise _fail(
                name,
                p.get("id"),
                f"{obs.operation} differs from the last write in {changed} without a later "
                "change",
            )


@rule("11")
def history_is_append_only(obs: Observation) -> None:
    """Rule 11: the COMPLETE/IN_PROGRESS history seen before is a prefix of every later view."""
    name = "history_is_append_only"
    for p in obs.participations():
        seen = obs.before.get(str(p.get("id")))
        if _own(obs, seen) and seen is not None and not _is_history_prefix(seen.view, p, name):
            old = [e.get("state") for e in _history(seen.view, name)]
            new = [e.get("state") for e in _history(p, name)]
            raise _fail(name, p.get("id"), f"history {old} was rewritten as {new}")


_SIMPLE_KEYS = frozenset({"state", "status", "suspension_reasons"})


def _simple(records: Sequence[Mapping[str, Any]]) -> bool:
    """Schema-valid records of states and reasons only: the answer is fully determined."""
    for r in records:
        reasons = r.get("suspension_reasons", [])
        if (
            not set(r) <= _SIMPLE_KEYS
            or r.get("status") not in ("COMPLETE", "IN_PROGRESS", "PENDING")
            or not isinstance(reasons, list)
            or not all(x in model.REASONS for x in reasons)
            or len(set(reasons)) != len(reasons)
        ):
            return False
    return 1 <= len(records) <= 20 and all(r.get("status") != "PENDING" for r in records)


@rule("12")
def illegal_update_rejected(obs: Observation) -> None:
    """Rule 12: updates are accepted or rejected as the transition table says; a rejection
    changes nothing."""
    name = "illegal_update_rejected"
    ex = obs.exchange
    pid = obs.path_id
    seen = obs.before.get(str(pid))
    if not _own(obs, seen) or seen is None:
        return
    if seen.rejected and obs.operation == "retrieveVppParticipation":
        for p in obs.participations():
            if p != seen.view:
                raise _fail(name, pid, "a rejected update changed the participation")
    if obs.operation != "updateVppParticipation" or not isinstance(ex.body, dict):
        return
    records = ex.body.get("participation_state")
    if not isinstance(records, list) or not records:
        return
    if not all(isinstance(r, dict) and r.get("state") in model.STATES for r in records):
        return
    try:
        verdict = model.judge_update(seen.view, records)
    except (KeyError, IndexError, TypeError, AttributeError):
        return
    accepted = 200 <= ex.status < 300
    if verdict.status == 409 and accepted:
        raise _fail(name, pid, f"update accepted ({ex.status}) but {verdict.reason}")
    # Bodies of states, statuses and reasons only have one right answer (contract §6).
    if not _simple(records) or ex.status in (401, 404, 429) or ex.status >= 500:
        return
    if verdict.status == 200 and not accepted:
        raise _fail(name, pid, f"answered {ex.status} to a {verdict.reason}")
    if verdict.status == 400 and accepted:
        raise _fail(name, pid, f"accepted a malformed update ({verdict.reason})")
    # One record: the move alone decides (a SUSPENDED record without reasons may be a 400).
    single = len(records) == 1 and (
        records[0].get("state") != "SUSPENDED" or bool(records[0].get("suspension_reasons"))
    )
    if verdict.status == 409 and ex.status != 409 and single:
        raise _fail(name, pid, f"answered {ex.status}, not 409, to {verdict.reason}")
    if accepted:
        for p in obs.participations():
            if p.get("current_state") != verdict.new_state:
                raise _fail(
                    name,
                    pid,
                    f"accepted a move to {verdict.new_state} but current_state is "
                    f"{p.get('current_state')}",
                )
            if verdict.unchanged and _history(p, name) != _history(seen.view, name):
                raise _fail(name, pid, f"a resubmission of {verdict.new_state} changed history")


@rule("13")
def namespaces_are_isolated(obs: Observation) -> None:
    """Rule 13: no response shows a participation created in another account or mode."""
    name = "namespaces_are_isolated"
    for p in obs.participations():
        seen = obs.before.get(str(p.get("id")))
        if seen is None or seen.owner is None or obs.identity is None:
            continue
        if seen.owner != obs.identity:
            raise _fail(
                name,
                p.get("id"),
                f"created by {_ns(seen.owner)} but visible to {_ns(obs.identity)} "
                f"({obs.operation} {obs.exchange.status})",
            )


    pid = obs.path_id
    seen = obs.before.get(str(pid))
    owner = seen.owner if seen is not None else None
    status = obs.exchange.status
    foreign = owner is not None and obs.identity is not None and owner != obs.identity
    if foreign and status not in (404, 401, 429) and status < 500:
        assert owner is not None and obs.identity is not None
        raise _fail(
            name,
            pid,
            f"{obs.operation} by {_ns(obs.identity)} answered {status}; an id of "
            f"{_ns(owner)} must be a 404",
        )


def _ns(identity: Identity) -> str:
    return f"{identity.account_id}/{'live' if identity.live_mode else 'test'}"


@rule("14")
def unauthenticated_request_rejected(obs: Observation) -> None:
    """Rule 14: a VPP operation without a valid bearer token is a 401."""
    name = "unauthenticated_request_rejected"
    if obs.operation in VPP_OPERATIONS and obs.identity is None and obs.exchange.status != 401:
        raise _fail(
            name,
            obs.path_id or "-",
            f"{obs.exchange.method} {obs.exchange.path} without a valid token answered "
            f"{obs.exchange.status}, not 401",
        )


@rule("15")
def list_page_is_well_formed(obs: Observation) -> None:
    """Rule 15: a page is newest first, within `limit`, and never answers both cursors."""
    name = "list_page_is_well_formed"
    ex = obs.exchange
    if obs.operation != "listVppParticipations" or not 200 <= ex.status < 300:
        return
    if "starting_after" in ex.query and "ending_before" in ex.query:
        raise _fail(name, "-", f"both cursors accepted with {ex.status}; expected 400")
    data = ex.data.get("data") if isinstance(ex.data, dict) else None
    if not isinstance(data, list) or not isinstance(ex.data.get("has_more"), bool):
        raise _fail(name, "-", "a list needs `data` (array) and `has_more` (boolean)")
    try:
        limit = int(ex.query.get("limit", 30))
    except ValueError:
        limit = 100
    if len(data) > limit:
        raise _fail(name, "-", f"{len(data)} items for limit {limit}")
    keys = [(str(p.get("time_created")), str(p.get("id"))) for p in data if isinstance(p, dict)]
    for a, b in itertools.pairwise(keys):
        if a <= b:
            raise _fail(name, b[1], f"listed after {a[1]} but not older (newest first)")
    if len(set(k[1] for k in keys)) != len(keys):
        raise _fail(name, "-", "the same participation twice on one page")


# -- section 7: every error --------------------------------------------------------------------


@rule("§7")
def error_body_is_error_object(obs: Observation) -> None:
    """Section 7 (and rule 14's error format): every 4xx/5xx is the Flatpeak error object."""
    name = "error_body_is_error_object"
    ex = obs.exchange
    if ex.status < 400:
        return
    pid = obs.path_id or "-"
    ctype = next((v for k, v in ex.response_headers.items() if k.lower() == "content-type"), "")
    if not ctype.startswith("application/json"):
        raise _fail(name, pid, f"{ex.status} with Content-Type {ctype!r}, not application/json")
    body = ex.data
    if not isinstance(body, dict) or body.get("object") != "error":
        raise _fail(name, pid, f"{ex.status} body is not an error object: {ex.text[:120]!r}")
    expected_type = "rate_limit" if ex.status == 429 else (
        "api_error" if ex.status >= 500 else "invalid_request"
    )
    if body.get("type") != expected_type:
        raise _fail(name, pid, f"{ex.status} has type {body.get('type')!r}, not {expected_type}")
    for key in ("code", "message", "context"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise _fail(name, pid, f"{ex.status} error has no {key}")
    if not isinstance(body.get("live_mode"), bool):
        raise _fail(name, pid, f"{ex.status} error has no boolean live_mode")
    _time(body.get("time_created"), name, pid, "error time_created")


@rule("§7")
def server_never_errs(obs: Observation) -> None:
    """Section 7: no 5xx from any request, valid or invalid."""
    name = "server_never_errs"
    if obs.exchange.status >= 500:
        raise _fail(
            name, obs.path_id or "-", f"{obs.exchange.method} {obs.exchange.path} gave "
            f"{obs.exchange.status}"
        )


# -- predicates over several responses (walks of the suites) ----------------------------------


@walk_rule("10")
def list_contains_participation(page: Observation, expected: Mapping[str, Any]) -> None:
    """Rule 10: a list filtered to the participation's device shows it as last retrieved."""
    name = "list_contains_participation"
    pid = expected.get("id")
    items = [p for p in page.participations() if p.get("id") == pid]
    if not items:
        raise _fail(name, pid, "missing from the list of its device")
    if items[0] != expected:
        item = items[0]
        changed = sorted(k for k in set(item) | set(expected) if item.get(k) != expected.get(k))
        raise _fail(name, pid, f"list item differs from the retrieve in {changed}")


@walk_rule("15")
def pages_walk_every_item_once(pages: Sequence[Observation], expected: Sequence[str]) -> None:
    """Rule 15: a full walk shows each item once, newest first, has_more true until the end."""
    name = "pages_walk_every_item_once"
    ids: list[str] = []
    for i, page in enumerate(pages):
        data = page.exchange.data if isinstance(page.exchange.data, dict) else {}
        got = [str(p.get("id")) for p in page.participations()]
        last = i == len(pages) - 1
        if data.get("has_more") is not (not last):
            where = "the last page" if last else f"page {i + 1} of {len(pages)}"
            raise _fail(
                name,
                got[-1] if got else "-",
                f"has_more is {data.get('has_more')} on {where} "
                f"({page.exchange.method} {page.exchange.url})",
            )
        ids += got
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise _fail(name, dupes[0], f"listed twice in one walk ({len(dupes)} repeated)")
    missing = [i for i in expected if i not in ids]
    if missing:
        raise _fail(name, missing[0], f"never listed in a full walk ({len(missing)} missing)")
    order = [i for i in ids if i in set(expected)]
    if order != list(expected):
        raise _fail(name, "-", f"walk order {order} is not newest first {list(expected)}")


# -- running the predicates -------------------------------------------------------------------

# The registered Schemathesis checks act only while a contract run has activated a ledger, so
# importing this module does not change other Schemathesis runs in the same process.
_ACTIVE: dict[str, Any] = {"ledger": None, "base_url": "http://testserver"}


def activate(ledger: Ledger | None, base_url: str = "http://testserver") -> None:
    """Make `ledger` the memory of the Schemathesis-registered checks (None: switch off)."""
    _ACTIVE["ledger"] = ledger
    _ACTIVE["base_url"] = base_url


def active_ledger() -> Ledger | None:
    ledger = _ACTIVE["ledger"]
    return ledger if isinstance(ledger, Ledger) else None


def check_exchange(
    ledger: Ledger, exchange: Exchange, checks: Sequence[Check] | None = None
) -> list[tuple[str, str]]:
    """Run every predicate on one exchange; (check name, message) for each that fails."""
    obs = ledger.observe(exchange)
    return list(_run(obs, checks or CHECKS))


def _run(obs: Observation, checks: Iterable[Check]) -> Iterable[tuple[str, str]]:
    for check in checks:
        try:
            check(obs)
        except AssertionError as exc:
            yield check.__name__, str(exc)
        except Exception as exc:  # a check bug must be reported, not abort the run (T13)
            yield check.__name__, f"rule {RULE_OF[check.__name__]} ({check.__name__}): " + (
                f"could not evaluate the response: {type(exc).__name__}: {exc}"
            )


def _register(check: Check) -> None:
    def st_check(ctx: Any, response: Any, case: Any) -> None:
        ledger = active_ledger()
        if ledger is None:
            return
        exchange = exchange_from_prepared(response.request, response, _ACTIVE["base_url"])
        obs = ledger.observe(exchange, key=response)
        for _, message in _run(obs, [check]):
            raise AssertionError(message)

    st_check.__name__ = check.__name__
    st_check.__qualname__ = check.__name__
    st_check.__doc__ = check.__doc__
    schemathesis.check(st_check)


for _check in CHECKS:
    _register(_check)

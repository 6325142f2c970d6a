"""Checks of one response on its own: rules 1-9 (the participation object), §1 (tokens),
§2 (fields and derived fields) and §7 (errors). Each is registered with its rule."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from vpp_sandbox.contract_tests import model, schemas
from vpp_sandbox.contract_tests.findings import Check, broken, register
from vpp_sandbox.contract_tests.ledger import Observation, basic_credentials

__all__ = [
    "ResponseCheck",
    "bearer_token_is_as_documented",
    "control_active_iff_active",
    "current_state_matches_timeline",
    "entry_times_within_object_times",
    "error_body_is_error_object",
    "history_follows_transitions",
    "http_rules_hold_outside_the_spec",
    "identity_matches_token",
    "object_times_are_exact",
    "outside_the_spec_answered_as_the_sandbox",
    "pending_tail_is_legal_path",
    "rate_limit_answer_is_documented",
    "response_matches_schema",
    "server_never_errs",
    "suspension_reasons_match_state",
    "telemetry_active_follows_timeline",
    "timeline_is_ordered",
    "timeline_times_are_ordered",
]

ID_PATTERN = re.compile(r"^vpp_[0-9a-f]{24}$")
TIME_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
EXACT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
VPP_OPERATIONS = (
    "createVppParticipation",
    "listVppParticipations",
    "retrieveVppParticipation",
    "updateVppParticipation",
)
SPEC_OPERATIONS = ("createBearerToken", *VPP_OPERATIONS)
ResponseCheck = Check[[Observation]]


def response_check(
    number: str, *, schemathesis: bool = True, idle: str = "", advice: bool = False
) -> Callable[[Callable[[Observation], bool]], ResponseCheck]:
    """Register a check that runs on every exchange (suites, Schemathesis, live traffic)."""
    return register(
        number, per_response=True, schemathesis=schemathesis, idle=idle, advice=advice
    )


def in_the_spec(obs: Observation) -> bool:
    """The request is one of the spec's operations (what the spec binds)."""
    return obs.operation in SPEC_OPERATIONS


# -- defensive accessors (trap T13: only AssertionError may escape) ---------------------------


def timeline(p: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = p.get("participation_state")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise broken(p.get("id"), "participation_state is not a list of entries")
    return entries


def history(p: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """COMPLETE and IN_PROGRESS entries, oldest first."""
    return [e for e in timeline(p) if e.get("status") != "PENDING"]


def tail(p: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The PENDING entries."""
    return [e for e in timeline(p) if e.get("status") == "PENDING"]


def parse_time(value: Any, pid: object, what: str) -> datetime:
    if not isinstance(value, str) or not TIME_PATTERN.match(value):
        raise broken(pid, f"{what} {value!r} is not an RFC 3339 UTC time ending in Z")
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00").astimezone(UTC)
    except ValueError:
        raise broken(pid, f"{what} {value!r} is not a valid time") from None


# -- rules 1-9: one participation object ------------------------------------------------------


@response_check("1")
def current_state_matches_timeline(obs: Observation) -> bool:
    """Rule 1: exactly one IN_PROGRESS entry, and its state is `current_state`."""
    judged = False
    for p in obs.participations():
        judged = True
        current = [e for e in timeline(p) if e.get("status") == "IN_PROGRESS"]
        if len(current) != 1:
            raise broken(p.get("id"), f"{len(current)} IN_PROGRESS entries, expected 1")
        if current[0].get("state") != p.get("current_state"):
            raise broken(
                p.get("id"),
                f"current_state {p.get('current_state')} but the IN_PROGRESS entry is "
                f"{current[0].get('state')}",
            )
    return judged


@response_check("2")
def timeline_is_ordered(obs: Observation) -> bool:
    """Rule 2: COMPLETE entries, then the IN_PROGRESS one, then PENDING entries."""
    rank = {"COMPLETE": 0, "IN_PROGRESS": 1, "PENDING": 2}
    judged = False
    for p in obs.participations():
        judged = True
        statuses = [e.get("status") for e in timeline(p)]
        ranks = [rank.get(str(s), -1) for s in statuses]
        if -1 in ranks or ranks != sorted(ranks):
            raise broken(p.get("id"), f"statuses out of order: {statuses}")
    return judged


@response_check("3")
def history_follows_transitions(obs: Observation) -> bool:
    """Rule 3: the history starts at ENROLMENT_REQUESTED and every step is a legal transition."""
    judged = False
    for p in obs.participations():
        judged = True
        states = [str(e.get("state")) for e in history(p)]
        if not states or states[0] != "ENROLMENT_REQUESTED":
            raise broken(p.get("id"), f"history starts {states[:1]}, not ENROLMENT_REQUESTED")
        bad = model.path_is_legal(states)
        if bad is not None:
            raise broken(
                p.get("id"), f"illegal step {states[bad - 1]} -> {states[bad]} in {states}"
            )
    return judged


@response_check("4")
def pending_tail_is_legal_path(obs: Observation) -> bool:
    """Rule 4: the PENDING tail is a legal path from the current state; none after a terminal."""
    judged = False
    for p in obs.participations():
        past = [str(e.get("state")) for e in history(p)]
        future = [str(e.get("state")) for e in tail(p)]
        if not past:
            continue
        judged = True
        if past[-1] in model.TERMINAL and future:
            raise broken(p.get("id"), f"terminal {past[-1]} has PENDING entries {future}")
        before = past[-2] if len(past) > 1 else None
        walk = [past[-1], *future]
        bad = model.path_is_legal(walk, before)
        if bad is not None:
            raise broken(p.get("id"), f"PENDING path {walk} has illegal step at {walk[bad]}")
    return judged


@response_check("5")
def timeline_times_are_ordered(obs: Observation) -> bool:
    """Rule 5: past entries have non-decreasing occurred_at; PENDING ones expected_at after it."""
    judged = False
    for p in obs.participations():
        judged = True
        pid = p.get("id")
        last: datetime | None = None
        current_at: datetime | None = None
        for i, e in enumerate(timeline(p)):
            where = f"participation_state[{i}] ({e.get('state')} {e.get('status')})"
            if e.get("status") == "PENDING":
                if e.get("occurred_at") is not None:
                    raise broken(pid, f"{where} is PENDING but has occurred_at")
                if e.get("expected_at") is None:
                    raise broken(pid, f"{where} is PENDING without expected_at")
                at = parse_time(e["expected_at"], pid, f"{where}.expected_at")
                if current_at is not None and at < current_at:
                    raise broken(pid, f"{where} is expected before the current entry")
            else:
                at = parse_time(e.get("occurred_at"), pid, f"{where}.occurred_at")
                current_at = at
            if last is not None and at < last:
                raise broken(pid, f"{where} goes back in time")
            last = at
    return judged


@response_check("6")
def entry_times_within_object_times(obs: Observation) -> bool:
    """Rule 6: time_created <= occurred_at of every past entry <= time_updated."""
    judged = False
    for p in obs.participations():
        judged = True
        pid = p.get("id")
        created = parse_time(p.get("time_created"), pid, "time_created")
        updated = parse_time(p.get("time_updated"), pid, "time_updated")
        for e in history(p):
            at = parse_time(e.get("occurred_at"), pid, f"{e.get('state')}.occurred_at")
            if not created <= at <= updated:
                raise broken(
                    pid,
                    f"{e.get('state')} occurred_at {e.get('occurred_at')} is outside "
                    f"[time_created {p.get('time_created')}, time_updated {p.get('time_updated')}]",
                )
    return judged


@response_check("7")
def control_active_iff_active(obs: Observation) -> bool:
    """Rule 7: control_active is true exactly when current_state is ACTIVE."""
    judged = False
    for p in obs.participations():
        judged = True
        if p.get("control_active") is not (p.get("current_state") == "ACTIVE"):
            raise broken(
                p.get("id"),
                f"control_active is {p.get('control_active')} in {p.get('current_state')}",
            )
    return judged


@response_check("8")
def suspension_reasons_match_state(obs: Observation) -> bool:
    """Rule 8: reasons non-empty iff SUSPENDED, unique, equal to the IN_PROGRESS entry's."""
    judged = False
    for p in obs.participations():
        judged = True
        pid = p.get("id")
        reasons = p.get("suspension_reasons")
        if not isinstance(reasons, list):
            raise broken(pid, "suspension_reasons is not a list")
        if bool(reasons) is not (p.get("current_state") == "SUSPENDED"):
            raise broken(pid, f"suspension_reasons {reasons} in {p.get('current_state')}")
        if len(set(map(str, reasons))) != len(reasons):
            raise broken(pid, f"duplicate suspension_reasons {reasons}")
        for e in timeline(p):
            got = e.get("suspension_reasons") or []
            if e.get("status") == "IN_PROGRESS" and sorted(map(str, got)) != sorted(
                map(str, reasons)
            ):
                raise broken(pid, f"IN_PROGRESS entry has reasons {got}, object {reasons}")
            if got and e.get("state") != "SUSPENDED":
                raise broken(pid, f"{e.get('state')} entry carries reasons {got}")
    return judged


@response_check("9")
def identity_matches_token(obs: Observation) -> bool:
    """Rule 9: id and object well-formed; live_mode and account_id are the token's."""
    judged = False
    for p in obs.participations():
        judged = True
        pid = p.get("id")
        if not isinstance(pid, str) or not ID_PATTERN.match(pid):
            raise broken(pid, "id does not match ^vpp_[0-9a-f]{24}$")
        if p.get("object") != "vpp-participation":
            raise broken(pid, f"object is {p.get('object')!r}")
        if obs.identity is not None:
            if p.get("live_mode") is not obs.identity.live_mode:
                raise broken(
                    pid,
                    f"live_mode {p.get('live_mode')} for a token with live_mode "
                    f"{obs.identity.live_mode}",
                )
            if p.get("account_id") != obs.identity.account_id:
                raise broken(
                    pid, f"account_id {p.get('account_id')} for a token of "
                    f"{obs.identity.account_id}"
                )
    return judged


# -- §1: bearer tokens --------------------------------------------------------------------------


def _jwt_part(text: str) -> Any:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return json.loads(raw)


@response_check("§1")
def bearer_token_is_as_documented(obs: Observation) -> bool:
    """§1: a login gives an HS256 JWT of the key's account and mode, expires_in 3600 and
    exp - iat equal to it, with the claims account_id, live_mode, iss, sub, exp, nbf, iat."""
    ex = obs.exchange
    if obs.operation != "createBearerToken" or ex.status != 200 or not isinstance(ex.data, dict):
        return False
    auth = next((v for k, v in ex.headers.items() if k.lower() == "authorization"), "")
    creds = basic_credentials(auth)
    if creds is None:
        return False
    account, key = creds
    live = key.startswith("sk_live_")
    data = ex.data
    if data.get("live_mode") is not live:
        raise broken("-", f"login with a {key[:8]}… key gave live_mode {data.get('live_mode')}")
    if data.get("expires_in") != 3600:
        raise broken("-", f"expires_in is {data.get('expires_in')!r}, not 3600")
    token = data.get("bearer_token")
    parts = token.split(".") if isinstance(token, str) else []
    try:
        header, claims = _jwt_part(parts[0]), _jwt_part(parts[1])
    except (IndexError, ValueError, UnicodeDecodeError):
        raise broken("-", "bearer_token is not a JWT (header.claims.signature)") from None
    if len(parts) != 3 or not isinstance(header, dict) or not isinstance(claims, dict):
        raise broken("-", "bearer_token is not a JWT (header.claims.signature)")
    if header.get("alg") != "HS256":
        raise broken("-", f"token algorithm {header.get('alg')!r}, not HS256")
    missing = [c for c in ("account_id", "live_mode", "iss", "sub", "exp", "nbf", "iat")
               if c not in claims]
    if missing:
        raise broken("-", f"token claims lack {missing}")
    if claims["account_id"] != account or claims["sub"] != account:
        raise broken("-", f"token claims account {claims['account_id']}/{claims['sub']} for "
                          f"a login of {account}")
    if claims["live_mode"] is not live:
        raise broken("-", f"token claim live_mode {claims['live_mode']} for a {key[:8]}… key")
    times = [claims[c] for c in ("exp", "nbf", "iat")]
    if not all(isinstance(t, int) for t in times) or claims["exp"] - claims["iat"] != 3600:
        raise broken("-", f"exp - iat is not expires_in (exp {claims['exp']!r}, iat "
                          f"{claims['iat']!r})")
    return True


# -- §2: fields and derived fields -------------------------------------------------------------


@response_check("§2", schemathesis=False)  # in Schemathesis phases its own schema check runs
def response_matches_schema(obs: Observation) -> bool:
    """§2: every response has a status the spec documents for the operation, a documented
    Content-Type and headers, and a body that matches the documented schema (every field
    present, every format right). A request in a media type the operation does not take may be
    refused in any way §7 allows: the spec documents nothing else about such a refusal."""
    ex = obs.exchange
    if obs.operation not in (*VPP_OPERATIONS, "createBearerToken"):
        return False
    if ex.status >= 400 and _shape_probe(obs):
        return False
    problem = schemas.response_problem(obs.operation, ex.status, ex.data, ex.response_headers)
    if problem is not None:
        pid = obs.path_id or next((p.get("id") for p in obs.participations()), "-")
        raise broken(pid, f"{obs.operation} {ex.status}: {problem}")
    return True


def _shape_probe(obs: Observation) -> bool:
    """The request names a Content-Type (well-formed or not) that its operation does not take;
    Schemathesis skips its conformance checks on such "request-shape probes" too."""
    sent = next((v for k, v in obs.exchange.headers.items() if k.lower() == "content-type"), None)
    if sent is None:
        return False
    media = sent.split(";", 1)[0].strip().lower()
    kind, slash, sub = media.partition("/")
    return not (kind and slash and sub) or media not in (
        schemas.request_media_types(obs.operation) or ()
    )


@response_check("§2")
def telemetry_active_follows_timeline(obs: Observation) -> bool:
    """§2: telemetry_active is true from the end of AWAITING_DEVICE_TELEMETRY until the
    participation is suspended for AWAITING_TELEMETRY, UNENROLLED or terminal."""
    judged = False
    for p in obs.participations():
        past = history(p)
        if not past:
            continue
        judged = True
        expected = model.telemetry_expected(past)
        if p.get("telemetry_active") is not expected:
            states = [e.get("state") for e in past]
            raise broken(
                p.get("id"),
                f"telemetry_active is {p.get('telemetry_active')}, expected {expected} after "
                f"{states}",
            )
    return judged


@response_check("§2")
def object_times_are_exact(obs: Observation) -> bool:
    """§2: every time is UTC with a Z and whole seconds; time_created is the first entry's
    occurred_at."""
    judged = False
    for p in obs.participations():
        judged = True
        pid = p.get("id")
        named = [("time_created", p.get("time_created")), ("time_updated", p.get("time_updated"))]
        for i, e in enumerate(timeline(p)):
            for key in ("occurred_at", "expected_at"):
                if e.get(key) is not None:
                    named.append((f"participation_state[{i}].{key}", e.get(key)))
        for what, value in named:
            if not isinstance(value, str) or not EXACT_TIME.match(value):
                raise broken(pid, f"{what} {value!r} is not UTC whole seconds (…T09:15:00Z)")
        past = history(p)
        if past and past[0].get("occurred_at") != p.get("time_created"):
            raise broken(
                pid,
                f"time_created {p.get('time_created')} is not the first entry's occurred_at "
                f"{past[0].get('occurred_at')}",
            )
    return judged


# -- §7: every error -----------------------------------------------------------------------------


@response_check("§7")
def error_body_is_error_object(obs: Observation) -> bool:
    """Section 7 (and rule 14's error format): every 4xx/5xx of an operation of the spec is the
    Flatpeak error object, with a code the spec gives its status and the token's mode."""
    ex = obs.exchange
    if ex.status < 400 or not in_the_spec(obs):
        return False
    _error_object(obs, schemas.error_codes().get(ex.status, frozenset()))
    return True


def _error_object(obs: Observation, codes: frozenset[str]) -> None:
    """The Flatpeak error object, with one of `codes` (any code when empty)."""
    ex = obs.exchange
    pid = obs.path_id or "-"
    ctype = next((v for k, v in ex.response_headers.items() if k.lower() == "content-type"), "")
    if not ctype.startswith("application/json"):
        raise broken(pid, f"{ex.status} with Content-Type {ctype!r}, not application/json")
    body = ex.data
    if not isinstance(body, dict) or body.get("object") != "error":
        raise broken(pid, f"{ex.status} body is not an error object: {ex.text[:120]!r}")
    expected_type = "rate_limit" if ex.status == 429 else (
        "api_error" if ex.status >= 500 else "invalid_request"
    )
    if body.get("type") != expected_type:
        raise broken(pid, f"{ex.status} has type {body.get('type')!r}, not {expected_type}")
    for key in ("code", "message", "context"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise broken(pid, f"{ex.status} error has no {key}")
    if codes and body["code"] not in codes:
        raise broken(
            pid, f"{ex.status} has code {body['code']!r}; a {ex.status} is one of {sorted(codes)}"
        )
    if not isinstance(body.get("live_mode"), bool):
        raise broken(pid, f"{ex.status} error has no boolean live_mode")
    has_auth = any(k.lower() == "authorization" for k in ex.headers)
    expected_live = obs.identity.live_mode if obs.identity is not None else (
        False if not has_auth else None
    )
    if expected_live is not None and body["live_mode"] is not expected_live:
        raise broken(
            pid, f"{ex.status} error has live_mode {body['live_mode']}; the request's token has "
            f"live_mode {expected_live}"
        )
    parse_time(body.get("time_created"), pid, "error time_created")


@response_check("§7")
def server_never_errs(obs: Observation) -> bool:
    """Section 7: no 5xx from any request to an operation of the spec, valid or invalid."""
    ex = obs.exchange
    if not in_the_spec(obs):
        return False
    if ex.status >= 500:
        raise broken(obs.path_id or "-", f"{ex.method} {ex.path} gave {ex.status}")
    return True


@response_check("§7", idle="the run sent no request outside the spec's operations answered 405")
def http_rules_hold_outside_the_spec(obs: Observation) -> bool:
    """Section 7: outside the spec's operations (unknown routes, undeclared methods) only what
    HTTP requires holds: a 405 carries an Allow header (RFC 9110, 15.5.6)."""
    ex = obs.exchange
    if in_the_spec(obs) or ex.status != 405:
        return False
    allow = next((v for k, v in ex.response_headers.items() if k.lower() == "allow"), None)
    if allow is None:
        raise broken("-", f"{ex.method} {ex.path} answered 405 without an Allow header, which "
                          "RFC 9110 requires")
    return True


# The codes the sandbox answers outside the spec's operations (docs/contract-rules.md).
_SANDBOX_OUTSIDE = {404: "route_not_found", 405: "method_not_allowed"}


@response_check("§7", advice=True)
def outside_the_spec_answered_as_the_sandbox(obs: Observation) -> bool:
    """Section 7, advice: outside the spec's operations the sandbox answers an unknown route
    404 route_not_found and an undeclared method 405 method_not_allowed, in the error object,
    never a 5xx; the spec leaves these answers to the implementation (a gateway may differ)."""
    ex = obs.exchange
    if in_the_spec(obs) or ex.status < 400:
        return False
    if ex.status >= 500:
        raise broken("-", f"{ex.method} {ex.path} gave {ex.status}")
    want = _SANDBOX_OUTSIDE.get(ex.status)
    _error_object(obs, frozenset({want}) if want else frozenset())
    return True


@response_check("§7", idle="the target answered no 429 (no rate limit was reached)")
def rate_limit_answer_is_documented(obs: Observation) -> bool:
    """Section 7: a 429 says when to retry (Retry-After, whole seconds, at least 1)."""
    ex = obs.exchange
    if ex.status != 429:
        return False
    value = next((v for k, v in ex.response_headers.items() if k.lower() == "retry-after"), "")
    if not value.strip().isdigit() or int(value) < 1:
        raise broken(obs.path_id or "-", f"429 with Retry-After {value!r}, not seconds >= 1")
    return True

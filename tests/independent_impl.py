"""A second implementation of the VPP participations API, written from the spec and the contract
text alone (openapi/vpp-participations.yaml, shared/design/vpp-contract.md), not from the mock.

It makes the choices the spec leaves open differently from the sandbox, so a suite that judged
the sandbox's choices would fail it: Starlette's own plain-text 404 and 405 (with Allow) outside
the operations, no X-Request-Id, its own error contexts and messages, forecasts a day a step,
display data of its own. State is in memory: one dict of participations per (account, mode).
Request bodies and parameters are checked with the spec's own schemas (jsonschema).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from jsonschema import Draft4Validator, FormatChecker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from vpp_sandbox import openapi

__all__ = ["Independent", "build"]

MOVES: dict[str, tuple[str, ...]] = {  # the contract's section 4, as written there
    "ENROLMENT_REQUESTED": ("AWAITING_CUSTOMER_CONSENT", "FAILED"),
    "AWAITING_CUSTOMER_CONSENT": ("AWAITING_DEVICE_TELEMETRY", "UNENROLMENT_REQUESTED", "FAILED"),
    "AWAITING_DEVICE_TELEMETRY": ("AWAITING_LOCATION_TELEMETRY", "CHECKING_ELIGIBILITY",
                                  "UNENROLMENT_REQUESTED", "FAILED"),
    "AWAITING_LOCATION_TELEMETRY": ("CHECKING_ELIGIBILITY", "UNENROLMENT_REQUESTED", "FAILED"),
    "CHECKING_ELIGIBILITY": ("AWAITING_REGISTRATION", "INELIGIBLE", "FAILED"),
    "AWAITING_REGISTRATION": ("REGISTERED", "UNENROLMENT_REQUESTED", "FAILED"),
    "REGISTERED": ("ACTIVE", "FAILED"),
    "ACTIVE": ("SUSPENDED", "UNENROLMENT_REQUESTED"),
    "SUSPENDED": ("ACTIVE", "SUSPENDED", "UNENROLMENT_REQUESTED"),
    "UNENROLMENT_REQUESTED": ("WINDING_DOWN", "FAILED"),
    "WINDING_DOWN": ("UNENROLLED", "FAILED"),
    "UNENROLLED": ("OFFBOARDED",),
    "INELIGIBLE": (),
    "OFFBOARDED": (),
    "FAILED": (),
}
JOINING = ("ENROLMENT_REQUESTED", "AWAITING_CUSTOMER_CONSENT", "AWAITING_DEVICE_TELEMETRY",
           "CHECKING_ELIGIBILITY", "AWAITING_REGISTRATION", "REGISTERED", "ACTIVE")
LEAVING = ("UNENROLMENT_REQUESTED", "WINDING_DOWN", "UNENROLLED", "OFFBOARDED")
ENDS = frozenset(LEAVING) | {"FAILED"}
TERMINAL = frozenset({"INELIGIBLE", "OFFBOARDED", "FAILED"})
HISTORY_MAX, HISTORY_ROOM = 500, 496
STEP = timedelta(days=1)  # our forecast: a day a step (the sandbox picks its own delays)


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _text(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime:
    at = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    return at.astimezone(UTC).replace(microsecond=0)


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:24]


def _expected(state: str, before: str | None) -> list[str]:
    """The contract's expected path after `state`."""
    if state == "AWAITING_LOCATION_TELEMETRY":
        return list(JOINING[JOINING.index("CHECKING_ELIGIBILITY"):])
    if state in JOINING[:-1]:
        return list(JOINING[JOINING.index(state) + 1:])
    if state == "SUSPENDED":
        return ["ACTIVE"]
    if state in LEAVING:
        return list(LEAVING[LEAVING.index(state) + 1:])
    return []


def _allowed(state: str, before: str | None) -> tuple[str, ...]:
    extra = (before,) if state == "UNENROLMENT_REQUESTED" and before else ()
    return MOVES[state] + extra


@dataclass
class Namespace:
    participations: dict[str, dict[str, Any]] = field(default_factory=dict)


class Independent:
    """The state and the handlers; `app` is the ASGI application."""

    def __init__(self, accounts: dict[str, tuple[str, ...]], secret: str | None = None) -> None:
        self.accounts = accounts  # account id -> its API keys
        self.secret = secret or secrets.token_urlsafe(32)
        self.spaces: dict[tuple[str, bool], Namespace] = {}
        spec = openapi.load()
        self.schemas = spec["components"]["schemas"]
        self.app: ASGIApp = Starlette(routes=[
            Route("/login", self.login, methods=["GET"]),
            Route("/vpp-participations", self.create, methods=["POST"]),
            Route("/vpp-participations", self.list, methods=["GET"]),
            Route("/vpp-participations/{pid}", self.retrieve, methods=["GET"]),
            Route("/vpp-participations/{pid}", self.update, methods=["POST"]),
        ])

    # -- plumbing ------------------------------------------------------------------------------

    def _validator(self, name: str) -> Draft4Validator:
        root = {"$ref": f"#/components/schemas/{name}",
                "components": {"schemas": _nullable(self.schemas)}}
        return Draft4Validator(root, format_checker=FormatChecker())

    def _check(self, name: str, value: Any, code: str, what: str) -> None:
        for error in self._validator(name).iter_errors(value):
            where = "/".join(str(p) for p in error.absolute_path) or what
            raise Refused(400, code, f"{where}: {error.message[:200]}")

    def _error(self, status: int, code: str, message: str, live: bool, ctx: str) -> Response:
        kind = "rate_limit" if status == 429 else ("api_error" if status >= 500 else
                                                    "invalid_request")
        return JSONResponse({"object": "error", "type": kind, "code": code, "message": message,
                             "context": f"vpp.{ctx}", "live_mode": live,
                             "time_created": _text(_now())}, status_code=status)

    def _who(self, request: Request) -> tuple[str, bool]:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise Refused(401, "authentication_required",
                          "Send Authorization: Bearer <token> (GET /login gives one).")
        try:
            claims = jwt.decode(header[7:].strip(), self.secret, algorithms=["HS256"],
                                options={"require": ["exp", "iat", "nbf"]})
        except jwt.ExpiredSignatureError:
            raise Refused(401, "token_expired", "The token expired; log in again.") from None
        except jwt.PyJWTError:
            raise Refused(401, "token_invalid", "The bearer token is not one of ours.") from None
        return str(claims["account_id"]), bool(claims["live_mode"])

    async def _body(self, request: Request) -> Any:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise Refused(415, "unsupported_media_type", "Send the body as application/json.")
        raw = await request.body()
        try:
            body = json.loads(raw.decode("utf-8"))
            json.dumps(body).encode("utf-8")  # lone surrogates are no text
        except (ValueError, UnicodeError):
            raise Refused(400, "invalid_request_body", "The body is not UTF-8 JSON.") from None
        return body

    def _space(self, who: tuple[str, bool]) -> Namespace:
        return self.spaces.setdefault(who, Namespace())

    async def _serve(
        self,
        request: Request,
        ctx: str,
        handler: Callable[[Request, tuple[str, bool]], Awaitable[Response]],
    ) -> Response:
        live = False
        try:
            who = self._who(request)
            live = who[1]
            return await handler(request, who)
        except Refused as refused:
            return self._error(refused.status, refused.code, refused.message, live, ctx)

    # -- login ---------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        if set(request.query_params) - set():
            return self._error(400, "invalid_parameter", "GET /login takes no query.", False,
                               "login")
        if not header.startswith("Basic "):
            return self._error(401, "authentication_required", "Log in with HTTP Basic.",
                               False, "login")
        try:
            account, _, key = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return self._error(401, "credentials_invalid", "Unreadable Basic credentials.",
                               False, "login")
        if key not in self.accounts.get(account, ()):
            return self._error(401, "credentials_invalid", "Wrong account id or API key.",
                               False, "login")
        live = key.startswith("sk_live_")
        now = int(time.time())
        claims = {"account_id": account, "live_mode": live, "iss": "independent", "sub": account,
                  "iat": now, "nbf": now, "exp": now + 3600}
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return JSONResponse({"bearer_token": token, "expires_in": 3600, "live_mode": live})

    # -- participations ------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        return await self._serve(request, "create", self._create)

    async def _create(self, request: Request, who: tuple[str, bool]) -> Response:
        if request.query_params:
            raise Refused(400, "invalid_parameter", "Creating takes no query parameters.")
        body = await self._body(request)
        self._check("VppParticipationCreate", body, "invalid_request_body", "body")
        space = self._space(who)
        for p in space.participations.values():
            if (p["device_id"], p["programme"]["id"]) == (body["device_id"],
                                                          body["programme_id"]) and (
                    p["current_state"] not in TERMINAL):
                raise Refused(409, "participation_exists",
                              f"{p['id']} already enrols this device in this programme.")
        now = _now()
        pid = "vpp_" + secrets.token_hex(12)
        device, provider, programme = body["device_id"], body["provider_id"], body["programme_id"]
        p = {
            "object": "vpp-participation", "id": pid, "reference_id": body.get("reference_id"),
            "live_mode": who[1], "device_id": device, "location_id": "loc_" + _digest(device),
            "current_state": "ENROLMENT_REQUESTED", "control_active": False,
            "telemetry_active": False, "suspension_reasons": [],
            "participation_state": [self._entry("ENROLMENT_REQUESTED", "IN_PROGRESS", now)],
            "time_created": _text(now), "time_updated": _text(now),
            "provider": {"id": provider, "provider_display_name": f"Provider {provider[4:10]}",
                         "logo_url": f"https://example.org/logos/{provider}.png"},
            "programme": {"id": programme,
                          "programme_display_name": f"Programme {programme[4:10]}",
                          "learn_more_url": f"https://example.org/programmes/{programme}"},
            "account_id": who[0],
        }
        p["participation_state"] += self._forecast(_expected("ENROLMENT_REQUESTED", None), now)
        space.participations[pid] = p
        return JSONResponse(p, status_code=201, headers={"Location": f"/vpp-participations/{pid}"})

    def _entry(self, state: str, status: str, at: datetime,
               reasons: list[str] | None = None, text: str | None = None) -> dict[str, Any]:
        entry = {"state": state, "status": status,
                 "description": text or f"{state.replace('_', ' ').capitalize()}.",
                 "suspension_reasons": list(reasons or [])}
        entry["expected_at" if status == "PENDING" else "occurred_at"] = _text(at)
        return entry

    def _forecast(self, states: list[str], start: datetime) -> list[dict[str, Any]]:
        reasons = ["OPERATOR_REQUEST"]
        return [self._entry(s, "PENDING", start + STEP * (i + 1),
                            reasons if s == "SUSPENDED" else None)
                for i, s in enumerate(states)]

    def _own(self, who: tuple[str, bool], pid: str) -> dict[str, Any]:
        self._check("ParticipationId", pid, "invalid_parameter", "participation_id")
        p = self._space(who).participations.get(pid)
        if p is None:
            raise Refused(404, "participation_not_found", f"No participation {pid} here.")
        return p

    async def retrieve(self, request: Request) -> Response:
        return await self._serve(request, "retrieve", self._retrieve)

    async def _retrieve(self, request: Request, who: tuple[str, bool]) -> Response:
        if request.query_params:
            raise Refused(400, "invalid_parameter", "Retrieving takes no query parameters.")
        return JSONResponse(self._own(who, request.path_params["pid"]))

    async def list(self, request: Request) -> Response:
        return await self._serve(request, "list", self._list)

    async def _list(self, request: Request, who: tuple[str, bool]) -> Response:
        names = ("device_id", "limit", "starting_after", "ending_before")
        params = request.query_params
        if set(params) - set(names) or any(len(params.getlist(n)) > 1 for n in params):
            raise Refused(400, "invalid_parameter", f"The parameters are {', '.join(names)}.")
        limit_text = params.get("limit", "30")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            raise Refused(400, "invalid_parameter", "limit is an integer from 1 to 100.")
        for name, schema in (("device_id", "DeviceId"), ("starting_after", "ParticipationId"),
                             ("ending_before", "ParticipationId")):
            if name in params:
                self._check(schema, params[name], "invalid_parameter", name)
        if "starting_after" in params and "ending_before" in params:
            raise Refused(400, "invalid_parameter", "One cursor at a time.")
        space = self._space(who).participations
        order = sorted(space.values(), key=lambda p: (p["time_created"], p["id"]), reverse=True)
        cursor_id = params.get("starting_after") or params.get("ending_before")
        if cursor_id is not None and cursor_id not in space:
            raise Refused(400, "invalid_parameter", f"{cursor_id} is not a cursor of yours.")
        device = params.get("device_id")
        rows = [p for p in order if device is None or p["device_id"] == device]
        limit = int(limit_text)
        if cursor_id is None:
            page, more = rows[:limit], len(rows) > limit
        else:
            mark = (space[cursor_id]["time_created"], cursor_id)
            if "starting_after" in params:
                older = [p for p in rows if (p["time_created"], p["id"]) < mark]
                page, more = older[:limit], len(older) > limit
            else:
                newer = [p for p in rows if (p["time_created"], p["id"]) > mark]
                page, more = newer[-limit:], len(newer) > limit
        return JSONResponse({"object": "list", "url": "/vpp-participations", "has_more": more,
                             "data": page})

    async def update(self, request: Request) -> Response:
        return await self._serve(request, "update", self._update)

    async def _update(self, request: Request, who: tuple[str, bool]) -> Response:
        if request.query_params:
            raise Refused(400, "invalid_parameter", "Updating takes no query parameters.")
        body = await self._body(request)
        self._check("VppParticipationUpdate", body, "invalid_request_body", "body")
        p = self._own(who, request.path_params["pid"])
        changed = _apply(p, body["participation_state"], _now())
        if changed is not None:
            self._space(who).participations[p["id"]] = changed
            p = changed
        return JSONResponse(p)


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's nullable as Draft 4 (a "null" type)."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k not in ("discriminator", "example")}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _invalid(message: str) -> Refused:
    return Refused(400, "participation_state_invalid", message)


def _apply(
    p: dict[str, Any], records: list[dict[str, Any]], now: datetime
) -> dict[str, Any] | None:
    """The participation after the update (None: nothing changes), or Refused."""
    statuses = [r["status"] for r in records]
    if statuses.count("IN_PROGRESS") != 1:
        raise _invalid("Send exactly one IN_PROGRESS record.")
    pivot = statuses.index("IN_PROGRESS")
    if any(s != "COMPLETE" for s in statuses[:pivot]) or any(
            s != "PENDING" for s in statuses[pivot + 1:]):
        raise _invalid("Order the records COMPLETE, IN_PROGRESS, then PENDING.")
    for r in records:
        if r["state"] != "SUSPENDED" and r.get("suspension_reasons"):
            raise _invalid(f"{r['state']} takes no suspension_reasons.")
    steps, pending = records[:pivot + 1], records[pivot + 1:]
    history = [dict(e) for e in p["participation_state"] if e["status"] != "PENDING"]
    current = history[-1]
    before = history[-2]["state"] if len(history) > 1 else None
    current_at = _parse(current["occurred_at"])
    same = (len(steps) == 1 and steps[0]["state"] == current["state"] and (
        current["state"] != "SUSPENDED"
        or set(steps[0].get("suspension_reasons") or []) == set(current["suspension_reasons"])))
    if same:
        if not pending:
            return None
        tail = _tail(pending, current["state"], before, max(current_at, now))
        return {**p, "participation_state": [*history, *tail],
                "time_updated": max(p["time_updated"], _text(now))}
    state, prev, last = current["state"], before, current_at
    added: list[dict[str, Any]] = []
    for i, r in enumerate(steps):
        if r["state"] not in _allowed(state, prev):
            raise Refused(409, "invalid_state_transition",
                          f"{state} cannot move to {r['state']}; it may move to "
                          f"{', '.join(_allowed(state, prev)) or 'nothing'}.")
        at = _parse(r["occurred_at"]) if r.get("occurred_at") else max(now, last)
        if at > now or at < last:
            raise _invalid(f"participation_state[{i}].occurred_at is in the future or goes back.")
        reasons = list(dict.fromkeys(r.get("suspension_reasons") or []))
        if r["state"] == "SUSPENDED" and not reasons:
            if state == "UNENROLMENT_REQUESTED" and prev == "SUSPENDED":
                held = history + added
                reasons = list(held[-2]["suspension_reasons"])
            else:
                raise _invalid("SUSPENDED needs suspension_reasons.")
        added.append({"state": r["state"], "status": "IN_PROGRESS",
                      "description": r.get("description") or f"{r['state'].title()}.",
                      "occurred_at": _text(at), "suspension_reasons": reasons})
        prev, state, last = state, r["state"], at
    if len(history) + len(added) > HISTORY_ROOM and any(a["state"] not in ENDS for a in added):
        raise Refused(409, "timeline_full", "The history is full; unenrol and enrol again.")
    for e in history:
        e["status"] = "COMPLETE"
    for a in added[:-1]:
        a["status"] = "COMPLETE"
    tail = _tail(pending, state, prev, last) if pending else [
        _pending_entry(s, last + STEP * (i + 1)) for i, s in enumerate(_expected(state, prev))]
    new = added[-1]
    telemetry = _telemetry([*history, *added])
    return {**p, "participation_state": [*history, *added, *tail],
            "current_state": new["state"], "control_active": new["state"] == "ACTIVE",
            "suspension_reasons": new["suspension_reasons"], "telemetry_active": telemetry,
            "time_updated": max(p["time_updated"], _text(now))}


def _pending_entry(state: str, at: datetime, reasons: list[str] | None = None,
                   text: str | None = None) -> dict[str, Any]:
    if state == "SUSPENDED" and not reasons:
        reasons = ["OPERATOR_REQUEST"]
    return {"state": state, "status": "PENDING",
            "description": text or f"{state.replace('_', ' ').capitalize()}.",
            "expected_at": _text(at), "suspension_reasons": list(reasons or [])}


def _tail(pending: list[dict[str, Any]], state: str, before: str | None,
          floor: datetime) -> list[dict[str, Any]]:
    if state in TERMINAL:
        raise _invalid(f"{state} is terminal: send no PENDING records.")
    out, at = [], floor
    for i, r in enumerate(pending):
        if r["state"] not in _allowed(state, before):
            raise _invalid(f"PENDING {r['state']} cannot follow {state}.")
        if r["state"] == "SUSPENDED" and not r.get("suspension_reasons"):
            raise _invalid("A SUSPENDED PENDING record needs suspension_reasons.")
        when = _parse(r["expected_at"]) if r.get("expected_at") else at + STEP
        if when < at:
            raise _invalid(f"participation_state PENDING[{i}].expected_at goes back in time.")
        out.append(_pending_entry(r["state"], when, r.get("suspension_reasons"),
                                  r.get("description")))
        before, state, at = state, r["state"], when
    return out


def _telemetry(history: list[dict[str, Any]]) -> bool:
    """From the end of AWAITING_DEVICE_TELEMETRY until suspended for AWAITING_TELEMETRY,
    UNENROLLED or a terminal state (the spec's telemetry_active)."""
    current = history[-1]
    if current["state"] in TERMINAL or current["state"] == "UNENROLLED":
        return False
    if current["state"] == "SUSPENDED" and "AWAITING_TELEMETRY" in current["suspension_reasons"]:
        return False
    past = [e["state"] for e in history[:-1]]
    return "AWAITING_DEVICE_TELEMETRY" in past and current["state"] != "AWAITING_DEVICE_TELEMETRY"


def build(accounts: dict[str, tuple[str, ...]], secret: str | None = None) -> Independent:
    """The independent implementation for `accounts` (id -> API keys)."""
    return Independent(accounts, secret)

"""Subtle planted defects: the real mock with one quiet violation each, of the kinds a random
walk misses (issue 12): the forecast after a kind of move, PENDING records, time fields,
resubmissions, enum spellings, page sizes and cursors, full last pages, moves reached only by a
deterministic tour, creation, derived fields, error codes, expired tokens.

Each is an ASGI wrapper (tests.contract_defects.Rewriter) or a Store subclass, and leaves
everything else working: every answer stays schema-valid and every other rule holds.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt

from tests.contract_defects import (
    JWT_SECRET,
    Answer,
    Defect,
    EachParticipation,
    Request,
    Rewriter,
    Scope,
)
from vpp_sandbox.mock_server.lifecycle import DESCRIPTIONS, State, expected_path
from vpp_sandbox.mock_server.store import DuplicateParticipation, ParticipationNotFound
from vpp_sandbox.mock_server.store_sqlite import SqliteStore

__all__ = ["PLANTED"]

VPP = "/vpp-participations"


def _is_update(request: Request) -> bool:
    return request.method == "POST" and request.path.startswith(VPP + "/")


def _records(request: Request) -> list[dict[str, Any]] | None:
    body = request.body
    if not _is_update(request) or not isinstance(body, dict):
        return None
    records = body.get("participation_state")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return None
    return records


def _with_records(request: Request, records: list[dict[str, Any]]) -> dict[str, Any]:
    assert isinstance(request.body, dict)
    return {**request.body, "participation_state": records}


async def _current(rewriter: Rewriter, request: Request) -> dict[str, Any] | None:
    auth = {"authorization": request.headers.get("authorization", "")}
    answer = await rewriter.call("GET", request.path, auth)
    return answer.data if answer.status == 200 and isinstance(answer.data, dict) else None


def _history(p: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in p["participation_state"] if e["status"] != "PENDING"]


def _error(status: int, code: str, message: str) -> Answer:
    body = {
        "object": "error",
        "type": "invalid_request",
        "code": code,
        "message": message,
        "context": "api.vpp_participation_update",
        "live_mode": False,
        "time_created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return Answer(status, body, [(b"content-type", b"application/json")])


def _pending(states: list[str], start: str) -> list[dict[str, Any]]:
    """PENDING entries an hour apart from `start` (a schema-valid forecast)."""
    at = datetime.fromisoformat(start.replace("Z", "+00:00"))
    out = []
    for i, state in enumerate(states, start=1):
        out.append({
            "state": state,
            "status": "PENDING",
            "description": DESCRIPTIONS[State(state)],
            "expected_at": (at + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "suspension_reasons": ["OPERATOR_REQUEST"] if state == "SUSPENDED" else [],
        })
    return out


def _set_query(scope: Scope, query: dict[str, str]) -> Scope:
    return {**scope, "query_string": urlencode(query).encode()}


# -- the forecast after a kind of move ------------------------------------------------------------


class ForecastPredictsCancellation(EachParticipation):
    """After a leave request the forecast goes back to the state held before (a legal path, but
    not the contract's: the leaving path to OFFBOARDED)."""

    def fix(self, p: dict[str, Any]) -> None:
        past = _history(p)
        if p["current_state"] != "UNENROLMENT_REQUESTED" or len(past) < 2:
            return
        back = past[-2]["state"]
        tail = [back, *(s.value for s in expected_path(State(back)))]
        p["participation_state"] = [*past, *_pending(tail, past[-1]["occurred_at"])]


class ForecastViaLocationAfterConsent(EachParticipation):
    """In AWAITING_CUSTOMER_CONSENT the forecast detours through the optional
    AWAITING_LOCATION_TELEMETRY step (legal, but not the expected path)."""

    def fix(self, p: dict[str, Any]) -> None:
        if p["current_state"] != "AWAITING_CUSTOMER_CONSENT":
            return
        _insert_location(p)


def _insert_location(p: dict[str, Any]) -> None:
    timeline = p["participation_state"]
    for i, e in enumerate(timeline):
        if e["status"] == "PENDING" and e["state"] == "AWAITING_DEVICE_TELEMETRY":
            extra = {**e, "state": "AWAITING_LOCATION_TELEMETRY",
                     "description": DESCRIPTIONS[State.AWAITING_LOCATION_TELEMETRY]}
            timeline.insert(i + 1, extra)
            return


class ReasonChangeDropsForecast(EachParticipation):
    """After SUSPENDED -> SUSPENDED (new reasons) the forecast is empty instead of ACTIVE."""

    def fix(self, p: dict[str, Any]) -> None:
        past = _history(p)
        if len(past) > 1 and past[-1]["state"] == past[-2]["state"] == "SUSPENDED":
            p["participation_state"] = past


# -- PENDING records and times sent ---------------------------------------------------------------


class PendingRecordsIgnored(Rewriter):
    """PENDING records of an update are dropped: the server always forecasts by itself."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is None or all(r.get("status") != "PENDING" for r in records):
            return request.body
        return _with_records(request, [r for r in records if r.get("status") != "PENDING"])


class OccurredAtIgnored(Rewriter):
    """occurred_at sent is ignored: every record is dated the time of the request."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is None or not any("occurred_at" in r for r in records):
            return request.body
        return _with_records(
            request, [{k: v for k, v in r.items() if k != "occurred_at"} for r in records]
        )


class FutureOccurredAtAccepted(Rewriter):
    """An occurred_at in the future is quietly replaced by now instead of refused."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is None:
            return request.body
        now = datetime.now(UTC)
        out, changed = [], False
        for r in records:
            at = r.get("occurred_at")
            try:
                future = isinstance(at, str) and datetime.fromisoformat(
                    at.replace("Z", "+00:00")) > now
            except ValueError:
                future = False
            if future:
                r = {k: v for k, v in r.items() if k != "occurred_at"}
                changed = True
            out.append(r)
        return _with_records(request, out) if changed else request.body


class DefaultTimeIsPreviousEntry(Rewriter):
    """A record without occurred_at is dated when the current state was reached, not now."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is None or all("occurred_at" in r for r in records
                                  if r.get("status") != "PENDING"):
            return request.body
        current = await _current(self, request)
        if current is None:
            return request.body
        at = _history(current)[-1]["occurred_at"]
        return _with_records(request, [
            r if r.get("status") == "PENDING" or "occurred_at" in r else {**r, "occurred_at": at}
            for r in records
        ])


class ExpectedAtIgnored(Rewriter):
    """expected_at sent on PENDING records is ignored: the server dates its forecast itself."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is None or not any("expected_at" in r for r in records):
            return request.body
        return _with_records(
            request, [{k: v for k, v in r.items() if k != "expected_at"} for r in records]
        )


# -- resubmissions --------------------------------------------------------------------------------


class ResubmissionRecomputesForecast(Rewriter):
    """Sending the current state again recomputes the forecast (a forecast the client sent is
    lost)."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is None or len(records) != 1 or records[0].get("status") != "IN_PROGRESS":
            return request.body
        current = await _current(self, request)
        if current is None or records[0].get("state") != current["current_state"]:
            return request.body
        if current["current_state"] == "SUSPENDED" and sorted(
            records[0].get("suspension_reasons") or []
        ) != sorted(current["suspension_reasons"]):
            return request.body
        path = [s.value for s in expected_path(State(current["current_state"]))]
        if not path:
            return request.body
        pending: list[dict[str, str | list[str]]] = [
            {"state": s, "status": "PENDING"} for s in path
        ]
        for r in pending:
            if r["state"] == "SUSPENDED":
                r["suspension_reasons"] = ["OPERATOR_REQUEST"]
        return _with_records(request, [*records, *pending])


class ReasonChangeIgnored(Rewriter):
    """SUSPENDED sent with other reasons is treated as a resubmission: the reasons stay."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is None or len(records) != 1 or records[0].get("state") != "SUSPENDED":
            return request.body
        current = await _current(self, request)
        if current is None or current["current_state"] != "SUSPENDED":
            return request.body
        return _with_records(request, [{**records[0],
                                        "suspension_reasons": current["suspension_reasons"]}])


class TerminalResubmissionRefused(Rewriter):
    """A terminal participation refuses even its own state again (409) instead of a 200."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is not None and len(records) == 1:
            current = await _current(self, request)
            terminal = ("INELIGIBLE", "OFFBOARDED", "FAILED")
            if current is not None and current["current_state"] in terminal and (
                records[0].get("state") == current["current_state"]
            ):
                return _refused(request)
        return request.body


def _refused(request: Request) -> dict[str, Any]:
    """A body the mock refuses with 409 and no change (a move back to the first state)."""
    return _with_records(request, [{"state": "ENROLMENT_REQUESTED", "status": "IN_PROGRESS"}])


# -- spelling -------------------------------------------------------------------------------------


def _tidy(value: Any) -> Any:
    return value.strip().upper().replace("-", "_").replace(" ", "_") if isinstance(
        value, str) else value


class EnumSpellingsAccepted(Rewriter):
    """States, statuses and reasons are read case- and space-insensitively ("active " works)."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is None:
            return request.body
        out = []
        for r in records:
            fixed = {**r, "state": _tidy(r.get("state")), "status": _tidy(r.get("status"))}
            if isinstance(r.get("suspension_reasons"), list):
                fixed["suspension_reasons"] = [_tidy(x) for x in r["suspension_reasons"]]
            out.append(fixed)
        return _with_records(request, out) if out != records else request.body


# -- lists ----------------------------------------------------------------------------------------


class DefaultPageSizeTwenty(Rewriter):
    """Without `limit` a page has 20 items, not 30."""

    def before(self, request: Request, scope: Scope) -> Scope:
        if request.method == "GET" and request.path == VPP and "limit" not in request.query:
            return _set_query(scope, {**request.query, "limit": "20"})
        return scope


class LimitCappedAtFifty(Rewriter):
    """A limit above 50 is quietly served as 50 (has_more stays right)."""

    def before(self, request: Request, scope: Scope) -> Scope:
        limit = request.query.get("limit", "")
        if request.path == VPP and limit.isdigit() and 50 < int(limit) <= 100:
            return _set_query(scope, {**request.query, "limit": "50"})
        return scope


class LimitHundredRefused(Rewriter):
    """limit=100, the documented maximum, is refused as out of range."""

    async def after(self, request: Request, answer: Answer) -> Answer:
        if request.method == "GET" and request.path == VPP and request.query.get("limit") == "100":
            return _error(400, "invalid_parameter", "limit must be an integer from 1 to 99.")
        return answer


class FullPageSaysHasMore(Rewriter):
    """has_more is "the page is full" (no look-ahead): a full last page says true."""

    async def after(self, request: Request, answer: Answer) -> Answer:
        if request.method == "GET" and request.path == VPP and answer.status == 200:
            limit = int(request.query.get("limit", "30"))
            answer.data["has_more"] = len(answer.data["data"]) == limit
        return answer


class CursorDropsDeviceFilter(SqliteStore):
    """With starting_after the device filter is forgotten: later pages mix in other devices."""

    async def list_json(self, namespace: Any, **kwargs: Any) -> tuple[list[str], bool]:
        if kwargs.get("starting_after") is not None:
            kwargs["device_id"] = None
        return await super().list_json(namespace, **kwargs)


class EndingBeforeCountsOtherDevices(SqliteStore):
    """ending_before takes `limit` items of the whole namespace, then filters the device: pages
    walking back come out short and skip the device's items."""

    async def list_json(self, namespace: Any, **kwargs: Any) -> tuple[list[str], bool]:
        device = kwargs.get("device_id")
        if kwargs.get("ending_before") is None or device is None:
            return await super().list_json(namespace, **kwargs)
        items, has_more = await super().list_json(namespace, **{**kwargs, "device_id": None})
        return [i for i in items if json.loads(i)["device_id"] == device], has_more


# -- moves a random walk rarely makes -------------------------------------------------------------


class CancelBackToLocationRefused(Rewriter):
    """Cancelling a leave request back to AWAITING_LOCATION_TELEMETRY is refused (409)."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        steps = [r for r in records or [] if r.get("status") != "PENDING"]
        if steps and steps[0].get("state") == "AWAITING_LOCATION_TELEMETRY":
            current = await _current(self, request)
            if current is not None and current["current_state"] == "UNENROLMENT_REQUESTED":
                return _refused(request)
        return request.body


class SkipToRegisteredAccepted(Rewriter):
    """AWAITING_DEVICE_TELEMETRY -> REGISTERED (illegal) is accepted: the server fills in the
    steps in between."""

    async def rewrite(self, request: Request) -> Any:
        records = _records(request)
        if records is None or [r.get("state") for r in records] != ["REGISTERED"]:
            return request.body
        current = await _current(self, request)
        if current is None or current["current_state"] != "AWAITING_DEVICE_TELEMETRY":
            return request.body
        return _with_records(request, [
            {"state": "CHECKING_ELIGIBILITY", "status": "COMPLETE"},
            {"state": "AWAITING_REGISTRATION", "status": "COMPLETE"},
            records[0],
        ])


class IllegalMoveWrongCode(Rewriter):
    """An illegal move is a 409 with the code participation_exists, not
    invalid_state_transition."""

    async def after(self, request: Request, answer: Answer) -> Answer:
        if isinstance(answer.data, dict) and answer.data.get("code") == "invalid_state_transition":
            answer.data["code"] = "participation_exists"
        return answer


# -- creation, derived fields, tokens -------------------------------------------------------------


class CreationForecastViaLocation(EachParticipation):
    """A new participation forecasts the optional AWAITING_LOCATION_TELEMETRY step."""

    def fix(self, p: dict[str, Any]) -> None:
        if p["current_state"] == "ENROLMENT_REQUESTED":
            _insert_location(p)


class CreatedAlreadyConsenting(Rewriter):
    """A new participation starts in AWAITING_CUSTOMER_CONSENT (ENROLMENT_REQUESTED already
    complete), not in ENROLMENT_REQUESTED."""

    async def after(self, request: Request, answer: Answer) -> Answer:
        if request.method != "POST" or request.path != VPP or answer.status != 201:
            return answer
        auth = {"authorization": request.headers.get("authorization", "")}
        body = {"participation_state": [{"state": "AWAITING_CUSTOMER_CONSENT",
                                         "status": "IN_PROGRESS"}]}
        moved = await self.call("POST", f"{VPP}/{answer.data['id']}", auth, body)
        return Answer(201, moved.data, answer.headers)


class TelemetryStaysActiveWhenLost(EachParticipation):
    """telemetry_active stays true while SUSPENDED for AWAITING_TELEMETRY."""

    def fix(self, p: dict[str, Any]) -> None:
        if p["current_state"] == "SUSPENDED" and "AWAITING_TELEMETRY" in p["suspension_reasons"]:
            p["telemetry_active"] = True


class ExpiredTokenAccepted(Rewriter):
    """A token past its exp is still accepted (the signature is checked, the expiry is not)."""

    SECRET = JWT_SECRET  # the in-process sandbox's (tests.contract_defects.build)

    def before(self, request: Request, scope: Scope) -> Scope:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return scope
        try:
            claims = jwt.decode(auth[7:], self.SECRET, algorithms=["HS256"],
                                options={"verify_exp": False})
        except jwt.PyJWTError:
            return scope
        if claims.get("exp", 0) >= time.time():
            return scope
        now = int(time.time())
        fresh = jwt.encode({**claims, "iat": now, "nbf": now, "exp": now + 3600}, self.SECRET,
                           algorithm="HS256")
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        return {**scope, "headers": [*headers, (b"authorization", f"Bearer {fresh}".encode())]}


# -- rule 13 on writes and §6 in every state (issue 19: checked on a sample before) ------------


class ForeignIllegalMoveLeaks(SqliteStore):
    """An update of another namespace's id is judged against that participation before the
    namespace is checked: a legal move is a 404, an illegal one a 409 (its existence leaks)."""

    async def update(self, namespace: Any, participation_id: str, change: Any) -> str:
        try:
            return await super().update(namespace, participation_id, change)
        except ParticipationNotFound:
            async for p in self.participations():
                if p.id == participation_id:
                    change(p)  # raises the 409 of an illegal move; a legal one is not stored
            raise


class DuplicateAllowedWhileSuspended(SqliteStore):
    """A device whose participation is SUSPENDED may enrol in the programme again (the
    duplicate check counts only participations that are not suspended)."""

    async def insert(self, participation: Any, *, admit: Any = None) -> str:
        try:
            return await super().insert(participation, admit=admit)
        except DuplicateParticipation as exc:
            existing = await self._suspended(exc.existing_id)
            if not existing:
                raise
            async with self._tx() as tx:  # out of the unique index, still SUSPENDED to clients
                await tx.execute("UPDATE participations SET terminal=1 WHERE id=?",
                                 (exc.existing_id,))
            return await super().insert(participation, admit=admit)

    async def _suspended(self, participation_id: str) -> bool:
        async for p in self.participations():
            if p.id == participation_id:
                return bool(p.current_state is State.SUSPENDED)
        return False


class ForeignEnrolmentBlocks(SqliteStore):
    """A device enrolled in a programme in one namespace cannot be enrolled in it in another
    (409 participation_exists: the other namespace's participation leaks)."""

    async def insert(self, participation: Any, *, admit: Any = None) -> str:
        async for p in self.participations():
            if (p.device_id, p.programme.id) == (participation.device_id,
                                                 participation.programme.id) and (
                    p.current_state.value not in ("INELIGIBLE", "OFFBOARDED", "FAILED")):
                raise DuplicateParticipation(p)
        return await super().insert(participation, admit=admit)


# name -> rule, the check that must name it, and how it is built (middleware or store).
PLANTED: tuple[Defect, ...] = (
    Defect("forecast_predicts_cancellation", "§4", "pending_tail_is_expected",
           ForecastPredictsCancellation),
    Defect("forecast_via_location_after_consent", "§4", "pending_tail_is_expected",
           ForecastViaLocationAfterConsent),
    Defect("reason_change_drops_forecast", "§4", "pending_tail_is_expected",
           ReasonChangeDropsForecast),
    Defect("pending_records_ignored", "§4", "pending_tail_is_expected", PendingRecordsIgnored),
    Defect("occurred_at_ignored", "§6", "update_appends_sent_records", OccurredAtIgnored),
    Defect("future_occurred_at_accepted", "§6", "malformed_update_refused",
           FutureOccurredAtAccepted),
    Defect("default_time_is_previous_entry", "§6", "default_time_is_request_time",
           DefaultTimeIsPreviousEntry),
    Defect("expected_at_ignored", "§4", "pending_tail_is_expected", ExpectedAtIgnored),
    Defect("resubmission_recomputes_forecast", "§6", "resubmission_changes_nothing",
           ResubmissionRecomputesForecast),
    Defect("reason_change_ignored", "§6", "update_appends_sent_records", ReasonChangeIgnored),
    Defect("terminal_resubmission_refused", "§4", "legal_move_accepted",
           TerminalResubmissionRefused),
    Defect("enum_spellings_accepted", "§6", "malformed_update_refused", EnumSpellingsAccepted),
    Defect("default_page_size_20", "15", "list_page_is_complete", DefaultPageSizeTwenty),
    Defect("limit_capped_at_50", "15", "list_page_is_complete", LimitCappedAtFifty),
    Defect("limit_100_refused", "15", "list_request_accepted", LimitHundredRefused),
    Defect("full_last_page_says_has_more", "15", "pages_walk_every_item_once",
           FullPageSaysHasMore),
    Defect("cursor_drops_device_filter", "15", "list_page_is_well_formed",
           store=CursorDropsDeviceFilter),
    Defect("ending_before_counts_other_devices", "15", "list_page_is_complete",
           store=EndingBeforeCountsOtherDevices),
    Defect("cancel_back_to_location_refused", "§4", "legal_move_accepted",
           CancelBackToLocationRefused),
    Defect("skip_to_registered_accepted", "12", "illegal_move_refused",
           SkipToRegisteredAccepted),
    Defect("illegal_move_wrong_code", "12", "illegal_move_refused", IllegalMoveWrongCode),
    Defect("creation_forecast_via_location", "§4", "pending_tail_is_expected",
           CreationForecastViaLocation),
    Defect("created_already_consenting", "§6", "created_as_requested", CreatedAlreadyConsenting),
    Defect("telemetry_active_when_lost", "§2", "telemetry_active_follows_timeline",
           TelemetryStaysActiveWhenLost),
    Defect("expired_token_accepted", "14", "expired_token_rejected", ExpiredTokenAccepted),
    Defect("foreign_illegal_move_leaks", "13", "foreign_id_not_found",
           store=ForeignIllegalMoveLeaks),
    Defect("duplicate_allowed_while_suspended", "§6", "duplicate_enrolment_refused",
           store=DuplicateAllowedWhileSuspended),
    Defect("foreign_enrolment_blocks", "13", "foreign_create_is_independent",
           store=ForeignEnrolmentBlocks),
)

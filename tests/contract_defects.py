"""Deliberately broken implementations: the real mock with one defect each.

Most defects are an ASGI middleware that rewrites what the mock answers (the client cannot
tell the difference from a server with that bug); the two that need the store's help are
Store subclasses. Nothing here touches mock_server itself.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from vpp_sandbox.mock_server.app import create_app
from vpp_sandbox.mock_server.autopilot import next_due
from vpp_sandbox.mock_server.documents import encode_checked
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Account, Settings
from vpp_sandbox.mock_server.store import ParticipationNotFound
from vpp_sandbox.mock_server.store_sqlite import SqliteStore

__all__ = ["DEFECTS", "JWT_SECRET", "SECOND", "Defect", "build"]

SECOND = Account("acc_" + "5e" * 12, "sk_test_contractsecondaccount")
ACCOUNTS = (*DEFAULT_ACCOUNT, SECOND)
# The in-process sandbox's signing secret (random, one per test process): the suite is given
# it as a provider gives its staging's (Target.jwt_secret), so a genuine expired token is made.
JWT_SECRET = secrets.token_urlsafe(32)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Answer:
    status: int
    data: Any
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    raw: bytes = b""


class Rewriter:
    """ASGI middleware: `before` may change the request, `rewrite` its JSON body (return the
    new body), `after` the JSON answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def before(self, request: Request, scope: Scope) -> Scope:
        return scope

    async def rewrite(self, request: Request) -> Any:
        return request.body

    async def after(self, request: Request, answer: Answer) -> Answer:
        return answer

    async def call(
        self, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> Answer:
        """Ask the wrapped app directly (used by defects that need the current object)."""
        raw = b"" if body is None else json.dumps(body).encode()
        if body is not None:
            headers = {**headers, "content-type": "application/json",
                       "content-length": str(len(raw))}
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        return await self._run(scope, raw)

    async def _run(self, scope: Scope, body: bytes) -> Answer:
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        start: Message = {}
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        raw = b"".join(chunks)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return Answer(start.get("status", 500), data, list(start.get("headers", [])), raw)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        request = Request(scope["method"], scope["path"], query, headers, parsed)
        scope = self.before(request, scope)
        rewritten = await self.rewrite(request)
        if rewritten is not parsed:
            body = json.dumps(rewritten).encode()
            kept = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
            scope = {**scope, "headers": [*kept, (b"content-length", str(len(body)).encode())]}
        answer = await self._run(scope, body)
        answer = await self.after(request, answer)
        payload = json.dumps(answer.data).encode() if answer.data is not None else answer.raw
        out = [(k, v) for k, v in answer.headers if k.lower() != b"content-length"]
        out.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        await send({"type": "http.response.body", "body": payload, "more_body": False})


def _participations(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict) and "participation_state" in data:
        return [data]
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return [p for p in data["data"] if isinstance(p, dict)]
    return []


class EachParticipation(Rewriter):
    """Apply `fix` to every participation object the mock returns."""

    def fix(self, p: dict[str, Any]) -> None:
        raise NotImplementedError

    async def after(self, request: Request, answer: Answer) -> Answer:
        if answer.status < 300:
            for p in _participations(answer.data):
                self.fix(p)
        return answer


# -- the defects ---------------------------------------------------------------------------------


class ControlActiveWhileSuspended(EachParticipation):
    def fix(self, p: dict[str, Any]) -> None:
        if p["current_state"] == "SUSPENDED":
            p["control_active"] = True


class CurrentStateIsFirstEntry(EachParticipation):
    def fix(self, p: dict[str, Any]) -> None:
        p["current_state"] = p["participation_state"][0]["state"]
        p["control_active"] = p["current_state"] == "ACTIVE"


class PendingBeforeCurrent(EachParticipation):
    def fix(self, p: dict[str, Any]) -> None:
        timeline = p["participation_state"]
        pending = [e for e in timeline if e["status"] == "PENDING"]
        if pending:
            timeline.remove(pending[0])
            at = next(i for i, e in enumerate(timeline) if e["status"] == "IN_PROGRESS")
            timeline.insert(at, pending[0])


class FirstEntryRenamed(EachParticipation):
    def fix(self, p: dict[str, Any]) -> None:
        first = p["participation_state"][0]
        if first["status"] == "COMPLETE":
            first["state"] = "AWAITING_CUSTOMER_CONSENT"


class IllegalPendingTail(EachParticipation):
    def fix(self, p: dict[str, Any]) -> None:
        timeline = p["participation_state"]
        last = timeline[-1]
        at = last.get("expected_at") or last.get("occurred_at")
        timeline.append(
            {
                "state": "ENROLMENT_REQUESTED",
                "status": "PENDING",
                "description": "Again.",
                "expected_at": at,
                "suspension_reasons": [],
            }
        )


class PendingExpectedInThePast(EachParticipation):
    def fix(self, p: dict[str, Any]) -> None:
        for e in p["participation_state"]:
            if e["status"] == "PENDING":
                e["expected_at"] = "2000-01-01T00:00:00Z"
                return


class CreatedAfterFirstEntry(EachParticipation):
    def fix(self, p: dict[str, Any]) -> None:
        year = int(p["time_created"][:4]) + 1
        p["time_created"] = f"{year}{p['time_created'][4:]}"


class ReasonsKeptAfterResume(EachParticipation):
    def fix(self, p: dict[str, Any]) -> None:
        if p["current_state"] == "ACTIVE":
            p["suspension_reasons"] = ["OPERATOR_REQUEST"]


class LiveModeFlipped(EachParticipation):
    def fix(self, p: dict[str, Any]) -> None:
        p["live_mode"] = not p["live_mode"]


class HistoryRewritten(EachParticipation):
    """Past entries' texts are reworded once they complete (history is not append-only)."""

    def fix(self, p: dict[str, Any]) -> None:
        for e in p["participation_state"]:
            if e["status"] == "COMPLETE":
                e["description"] = "Done."


class StaleRetrieve(Rewriter):
    """A read cache that is never invalidated: retrieve keeps answering the first read."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.cache: dict[str, Answer] = {}

    async def after(self, request: Request, answer: Answer) -> Answer:
        is_retrieve = request.method == "GET" and request.path.count("/") == 2
        if is_retrieve and answer.status == 200:
            return self.cache.setdefault(request.path, answer)
        return answer


class IllegalTransitionAccepted(Rewriter):
    """An illegal update answers 200 with the unchanged participation."""

    async def after(self, request: Request, answer: Answer) -> Answer:
        code = answer.data.get("code") if isinstance(answer.data, dict) else None
        if request.method == "POST" and code == "invalid_state_transition":
            auth = {"authorization": request.headers.get("authorization", "")}
            current = await self.call("GET", request.path, auth)
            return Answer(200, current.data, current.headers)
        return answer


class AuthNotEnforced(Rewriter):
    """Requests without a usable bearer token run as the last account that logged in."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.tokens: list[str] = []

    def before(self, request: Request, scope: Scope) -> Scope:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        vpp = request.path.startswith("/vpp-participations")
        if vpp and self.tokens and given not in self.tokens:
            headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
            headers.append((b"authorization", f"Bearer {self.tokens[-1]}".encode()))
            return {**scope, "headers": headers}
        return scope

    async def after(self, request: Request, answer: Answer) -> Answer:
        if request.path == "/login" and answer.status == 200:
            self.tokens.append(answer.data["bearer_token"])
        return answer


class HasMoreAlwaysFalse(Rewriter):
    async def after(self, request: Request, answer: Answer) -> Answer:
        if request.path == "/vpp-participations" and answer.status == 200:
            answer.data["has_more"] = False
        return answer


class ProblemJsonNotFound(Rewriter):
    """404s in framework style (problem+json), not the Flatpeak error object."""

    async def after(self, request: Request, answer: Answer) -> Answer:
        if answer.status == 404:
            headers = [(k, v) for k, v in answer.headers if k.lower() != b"content-type"]
            headers.append((b"content-type", b"application/problem+json"))
            return Answer(404, {"title": "Not Found", "status": 404}, headers)
        return answer


class CrashOnDeviceFilter(Rewriter):
    """A valid list filtered by device crashes the server."""

    async def after(self, request: Request, answer: Answer) -> Answer:
        if request.path == "/vpp-participations" and "device_id" in request.query:
            return Answer(
                500,
                {
                    "object": "error",
                    "type": "api_error",
                    "code": "internal_error",
                    "message": "boom",
                    "context": "api.vpp_participation_list",
                    "live_mode": False,
                    "time_created": "2026-11-25T00:00:00Z",
                },
                answer.headers,
            )
        return answer


class LeakyStore(SqliteStore):
    """Looks participations up by id only, whatever the token's namespace."""

    async def get_json(self, namespace: Any, participation_id: str) -> str:
        try:
            return await super().get_json(namespace, participation_id)
        except ParticipationNotFound:
            async for p in self.participations():
                if p.id == participation_id:
                    return json.dumps(p.to_json())
            raise


class RepeatingStore(SqliteStore):
    """Off-by-one cursor: the next page starts with the cursor item again."""

    async def list_json(self, namespace: Any, **kwargs: Any) -> tuple[list[str], bool]:
        items, has_more = await super().list_json(namespace, **kwargs)
        cursor = kwargs.get("starting_after")
        if cursor is None:
            return items, has_more
        again = await super().get_json(namespace, cursor)
        return [again, *items][: kwargs.get("limit", 30)], has_more


# -- the table: name -> (how to build it, rule number, check that must name it) ----------------


@dataclass(frozen=True)
class Defect:
    name: str
    rule: str
    check: str
    middleware: type[Rewriter] | None = None
    store: type[SqliteStore] | None = None


DEFECTS: tuple[Defect, ...] = (
    Defect("current_state_not_in_progress_entry", "1", "current_state_matches_timeline",
           CurrentStateIsFirstEntry),
    Defect("pending_before_current_entry", "2", "timeline_is_ordered", PendingBeforeCurrent),
    Defect("history_not_starting_at_enrolment", "3", "history_follows_transitions",
           FirstEntryRenamed),
    Defect("pending_tail_illegal", "4", "pending_tail_is_legal_path", IllegalPendingTail),
    Defect("pending_expected_before_current", "5", "timeline_times_are_ordered",
           PendingExpectedInThePast),
    Defect("time_created_after_first_entry", "6", "entry_times_within_object_times",
           CreatedAfterFirstEntry),
    Defect("control_active_while_suspended", "7", "control_active_iff_active",
           ControlActiveWhileSuspended),
    Defect("reasons_kept_after_resume", "8", "suspension_reasons_match_state",
           ReasonsKeptAfterResume),
    Defect("live_mode_not_matching_key", "9", "identity_matches_token", LiveModeFlipped),
    Defect("stale_retrieve", "10", "reads_return_last_write", StaleRetrieve),
    Defect("history_rewritten_between_reads", "11", "history_is_append_only", HistoryRewritten),
    Defect("illegal_transition_accepted", "12", "illegal_update_rejected",
           IllegalTransitionAccepted),
    Defect("other_account_readable", "13", "namespaces_are_isolated", store=LeakyStore),
    Defect("auth_not_enforced", "14", "unauthenticated_request_rejected", AuthNotEnforced),
    Defect("item_repeated_across_pages", "15", "pages_walk_every_item_once",
           store=RepeatingStore),
    Defect("has_more_wrong", "15", "pages_walk_every_item_once", HasMoreAlwaysFalse),
    Defect("error_body_not_error_format", "§7", "error_body_is_error_object", ProblemJsonNotFound),
    Defect("server_error_on_valid_request", "§7", "server_never_errs", CrashOnDeviceFilter),
)


def build(defect: Defect | None = None) -> Any:
    """The mock app (in-memory, two accounts) with `defect` built in, or the real one."""
    settings = Settings(db=":memory:", accounts=ACCOUNTS, jwt_secret=JWT_SECRET)
    store_cls = defect.store if defect is not None and defect.store is not None else SqliteStore
    app: Any = create_app(settings, store_cls(":memory:", next_due=next_due, encode=encode_checked))
    if defect is not None and defect.middleware is not None:
        app = defect.middleware(app)
    return app

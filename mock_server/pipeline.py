"""The request pipeline: Connexion's middleware, composed through its public options.

    Front        the request's facts and id, its journal entry (mock_server.journal)
    Errors       every exception of the layers below, answered by the one error renderer
    Identify     the caller, from its Authorization header, once; its namespace's clock
    Intake       header and body limits, framing, codings, a trailing slash (mock_server.intake)
    Routing      Connexion: the operation, from the specs (both APIs)
    Security     Connexion: each operation's security schemes, our functions (mock_server.auth)
    Faults       forced faults and the per-namespace rate limit (mock_server.faults)
    Validation   Connexion: parameters and JSON bodies, our validators (mock_server.validation)
    Endpoints    the handler of the operation, its answer checked (mock_server.endpoints)

Connexion's stack is a list its users choose (`ConnexionMiddleware(middlewares=...)`): this
one leaves out what the sandbox does itself, once (Connexion's two exception middlewares, its
response validation, its context and lifespan middlewares, and the Swagger UI middleware in
front of every request, which the endpoints reach only for paths no operation has).
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from connexion.exceptions import ProblemException
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpp_sandbox.mock_server.clock import ClockState
from vpp_sandbox.mock_server.documents import InvalidDocument
from vpp_sandbox.mock_server.errors import (
    CATALOGUE,
    CONTEXTS,
    INTERNAL_MESSAGE,
    ApiError,
    Router,
    error_body,
    internal_message,
    status_of,
)
from vpp_sandbox.mock_server.journal import Front, Journal
from vpp_sandbox.mock_server.participations import refusal
from vpp_sandbox.mock_server.request import SCOPE_KEY, Facts, facts_of, operation_of
from vpp_sandbox.mock_server.store import PageQuery, StoreError, StoreUnavailable
from vpp_sandbox.mock_server.validation import ParameterPlan

__all__ = ["Errors", "Identify", "describe", "not_found", "route_error", "stack"]

log = logging.getLogger("vpp_sandbox.mock_server")

# Seconds a client should wait when the store cannot be reached.
STORE_RETRY_AFTER = 2


def describe(exc: BaseException, scope: Scope) -> tuple[str, str, Mapping[str, str]]:
    """The catalogue code, message and headers an exception is answered with."""
    if isinstance(exc, StoreError):  # a store's refusal that no service worded on its way up
        exc = refusal(exc)
    if isinstance(exc, ApiError):
        return exc.code, exc.message, exc.headers
    code, message = getattr(exc, "code", None), getattr(exc, "message", None)
    if code in CATALOGUE and code != "internal_error" and isinstance(message, str):
        return str(code), message, {}  # a domain error (lifecycle, clock, accounts)
    if isinstance(exc, StoreUnavailable):
        if exc.maybe_applied:  # lost while committing: the change may be saved
            outcome = internal_message(scope.get("method", "POST"), operation_of(scope))
            outcome = outcome.removeprefix("An unexpected error occurred after the request was "
                                           "accepted. ")
        else:
            outcome = "Nothing was changed."
        return (
            "store_unavailable",
            f"The sandbox's store cannot be reached right now, or stays locked. {outcome} "
            f"Retry after {STORE_RETRY_AFTER} seconds.",
            {"Retry-After": str(STORE_RETRY_AFTER)},
        )
    if isinstance(exc, ProblemException):  # Connexion's own: 415 (media type), 401 (no token)
        if exc.status == 415:
            return (
                "unsupported_media_type",
                "Send the request body as JSON with the header Content-Type: application/json.",
                {},
            )
        if exc.status == 401:
            return (
                "authentication_required",
                "Send Authorization: Bearer <token>, with a token from GET /login "
                "(HTTP Basic: your account id and API key).",
                {},
            )
        if exc.status == 400:
            return "invalid_request_body", str(exc.detail or exc.title), {}
    if isinstance(exc, HTTPException) and 400 <= exc.status_code < 500:
        return "invalid_parameter", str(exc.detail), dict(exc.headers or {})
    if isinstance(exc, UnicodeDecodeError):
        return (
            "invalid_request_body",
            "The request body is not valid UTF-8 JSON; send it encoded as UTF-8.",
            {},
        )
    method = scope.get("method", "GET")
    if isinstance(exc, InvalidDocument):  # refused before the write: nothing changed
        log.error("sandbox bug on %s %s: %s", method, scope.get("path"), exc)
        return "internal_error", INTERNAL_MESSAGE, {}
    log.error("unexpected error on %s %s", method, scope.get("path"), exc_info=exc)
    return "internal_error", internal_message(method, operation_of(scope)), {}


def route_error(scope: Scope, router: Router) -> ApiError:
    """The answer to a request no operation matched: a 405 with `Allow` when the path has other
    methods, else a 404 (or, for a path with a control character, what is wrong with it)."""
    method, path = scope["method"], scope["path"]
    control = next((c for c in path if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if control is not None:
        # Connexion's router matches no path with a control character in it. Where it would
        # be a VPP operation the token comes first (rule 14), as on every other request.
        caller = facts_of(scope).caller
        if path.startswith("/vpp-participations") and caller.claims is None:
            return ApiError(
                "token_invalid" if caller.scheme else "authentication_required",
                "Send Authorization: Bearer <token>, with a valid token from GET /login "
                "(HTTP Basic: your account id and API key).",
            )
        return ApiError(
            "invalid_parameter",
            f"The path contains the control character U+{ord(control):04X}; ids are letters, "
            "digits and underscores (vpp_ and 24 lowercase hex characters): remove it.",
        )
    allow = router.allow(path)
    if allow is not None:
        return ApiError(
            "method_not_allowed",
            f"{method} is not allowed on {path}. Allowed methods: {allow}.",
            {"Allow": allow},
        )
    return ApiError(
        "route_not_found",
        f"There is no route {method} {path}. The API serves /login, /vpp-participations and "
        "/vpp-participations/{participation_id}; the reference is at /ui/ (the sandbox "
        "controls at /_sandbox/ui/).",
    )


def not_found(router: Router) -> ASGIApp:
    """The app at the end of every path no operation or page matched."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise route_error(scope, router)

    return app


class Errors:
    """Every error of the layers below leaves as the Flatpeak error object, written here once:
    with the caller's mode and the namespace's clock as read for the request (never the store
    again), and the operation's context."""

    def __init__(
        self, app: ASGIApp, *, router: Router, real: Callable[[], datetime]
    ) -> None:
        self.app = app
        self.router = router
        self.real = real

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_)
        except Exception as exc:
            if started:  # the answer is under way: nothing can be said any more
                raise
            if isinstance(exc, HTTPException) and exc.status_code in (404, 405):
                exc = route_error(scope, self.router)  # Starlette's router, a method it lacks
            code, message, headers = describe(exc, scope)
            await self.render(scope, send, code, message, headers)

    def context(self, scope: Scope) -> str:
        operation = operation_of(scope)
        if operation is None:  # answered before routing, or no route: the table says
            ops = self.router.match(scope.get("path", "/")) or {}
            operation = ops.get(scope.get("method", "GET"))
        return CONTEXTS.get(operation or "", "api")

    async def render(
        self,
        scope: Scope,
        send: Send,
        code: str,
        message: str,
        headers: Mapping[str, str] = {},
    ) -> None:
        facts: Facts | None = scope.get(SCOPE_KEY)
        namespace = None if facts is None else facts.caller.namespace
        now = facts.now if facts is not None and facts.now is not None else self.real()
        body = error_body(
            code,
            message,
            context=self.context(scope),
            live_mode=False if namespace is None else namespace.live_mode,
            now=now,
        )
        if facts is not None:
            facts.error = (code, message)
        payload = orjson.dumps(body)
        raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status_of(code), "headers": raw})
        await send({"type": "http.response.body", "body": payload})


class Identify:
    """Who is calling, from the Authorization header, checked once (the token's signature, its
    claims, whether its account still opens the mode); then its namespace's clock and earliest
    due autopilot step, in one store read. Never refuses: each operation's security function
    decides what the caller may do (`auth.security_map`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: Any,  # handlers.AppState: its clock and authenticator may be swapped by tests
        admin_key: str | None,
        single: Callable[[Scope], str | None] = lambda scope: None,
        page: Callable[[Scope], PageQuery | None] = lambda scope: None,
    ) -> None:
        self.app = app
        self.state = state
        self.admin_key = None if admin_key is None else admin_key.encode()
        # The participation id of a request that reads one (a retrieve), the page of one that
        # lists them: read with the clock.
        self.single = single
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.identify(facts_of(scope), scope)
        await self.app(scope, receive, send)

    async def identify(self, facts: Facts, scope: Scope) -> None:
        header = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value
                break
        if not header:
            return
        caller = facts.caller
        kind, _, value = header.decode("latin-1").partition(" ")
        caller.scheme, caller.credentials = kind.lower(), value.strip()
        if caller.scheme != "bearer" or not caller.credentials:
            return
        if self.admin_key is not None and hmac.compare_digest(
            caller.credentials.encode(), self.admin_key
        ):
            caller.admin = True
            return
        authenticator = self.state.authenticator
        await authenticator.ready()
        try:
            caller.claims = await authenticator.verify(caller.credentials)
        except ApiError as exc:
            caller.problem = exc
            return
        namespace = caller.namespace
        assert namespace is not None
        facts.prefetched_id = self.single(scope)
        store = self.state.store
        if facts.prefetched_id is None and store.page_beside_state:
            facts.page_query = self.page(scope)
        read = await store.namespace_state(namespace, facts.prefetched_id, facts.page_query)
        facts.clock = read.clock or ClockState()
        facts.earliest_due, facts.faults = read.earliest_due, read.faults
        facts.prefetched, facts.prefetched_page = read.participation, read.page
        facts.now = facts.clock.now(self.state.clock.real())


def single_read(router: Router, operation_id: str) -> Callable[[Scope], str | None]:
    """The path parameter of a GET of `operation_id` (its path has one), else None: a cheap
    look at the path, so Identify can read that row with the clock (the operation is still
    routed, checked and validated by Connexion; a wrong guess only costs an unused column)."""
    pattern = router.capture(operation_id)

    def single(scope: Scope) -> str | None:
        if scope["method"] not in ("GET", "HEAD"):
            return None
        found = pattern.match(scope["path"])
        return None if found is None else found[1]

    return single


def page_read(
    router: Router, operation_id: str, parameters: ParameterPlan
) -> Callable[[Scope], PageQuery | None]:
    """The page a GET of `operation_id` (a list) asks for, its query read by the same checks
    its validator applies (so the limit is bounded before anything is read), else None: a
    query the validator will refuse, or another request, reads no page."""
    pattern = router.capture(operation_id)

    def page(scope: Scope) -> PageQuery | None:
        if scope["method"] not in ("GET", "HEAD") or pattern.match(scope["path"]) is None:
            return None
        try:
            arguments = parameters.arguments(scope)
            query = PageQuery(**arguments)
        except (ApiError, TypeError):  # refused, or a parameter a page query does not name
            return None
        if query.starting_after is not None and query.ending_before is not None:
            return None
        return query

    return page


def stack(
    *,
    journal: Journal,
    router: Router,
    real: Callable[[], datetime],
    state: Any,
    admin_key: str | None,
    list_parameters: Sequence[Mapping[str, Any]],
    intake: Callable[[ASGIApp], ASGIApp],
    faults: Callable[[ASGIApp], ASGIApp],
) -> list[Any]:
    """The middleware list for `ConnexionMiddleware(middlewares=...)`, outermost first.
    (`list_parameters`: the list operation's, whose page is read with the clock.)"""
    single = single_read(router, "retrieveVppParticipation")
    page = page_read(
        router, "listVppParticipations", ParameterPlan(list_parameters, strict=True)
    )
    return [
        functools.partial(Front, journal=journal),
        functools.partial(Errors, router=router, real=real),
        functools.partial(
            Identify, state=state, admin_key=admin_key, single=single, page=page
        ),
        intake,
        RoutingMiddleware,
        SecurityMiddleware,
        faults,
        RequestValidationMiddleware,
    ]

"""One error catalogue, and the handlers that render every error as the Flatpeak error object."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from connexion.exceptions import ProblemException, UnsupportedMediaTypeProblem
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from vpp_sandbox.mock_server.accounts import AccountError
from vpp_sandbox.mock_server.documents import InvalidDocument
from vpp_sandbox.mock_server.lifecycle import LifecycleError, format_time
from vpp_sandbox.mock_server.store import StoreError

__all__ = [
    "CATALOGUE",
    "CONTEXTS",
    "ApiError",
    "Router",
    "error_body",
    "install",
    "internal_message",
    "status_of",
]

# code -> (HTTP status, error type). Every error the server sends has a code from this table.
CATALOGUE: Mapping[str, tuple[int, str]] = {
    "invalid_request_body": (400, "invalid_request"),
    "invalid_parameter": (400, "invalid_request"),
    "participation_state_invalid": (400, "invalid_request"),
    "clock_cannot_go_back": (400, "invalid_request"),
    "request_malformed": (400, "invalid_request"),
    "authentication_required": (401, "invalid_request"),
    "token_invalid": (401, "invalid_request"),
    "token_expired": (401, "invalid_request"),
    "credentials_invalid": (401, "invalid_request"),
    "admin_key_invalid": (401, "invalid_request"),
    "admin_key_required": (403, "invalid_request"),
    "account_forbidden": (403, "invalid_request"),
    "account_not_found": (404, "invalid_request"),
    "participation_not_found": (404, "invalid_request"),
    "route_not_found": (404, "invalid_request"),
    "method_not_allowed": (405, "invalid_request"),
    "request_timeout": (408, "invalid_request"),
    "invalid_state_transition": (409, "invalid_request"),
    "participation_exists": (409, "invalid_request"),
    "autopilot_unavailable": (409, "invalid_request"),
    "timeline_full": (409, "invalid_request"),
    "namespace_full": (409, "invalid_request"),
    "account_not_deletable": (409, "invalid_request"),
    "account_limit_reached": (409, "invalid_request"),
    "request_too_large": (413, "invalid_request"),
    "unsupported_media_type": (415, "invalid_request"),
    "rate_limited": (429, "rate_limit"),
    "request_header_too_large": (431, "invalid_request"),
    "internal_error": (500, "api_error"),
    "server_busy": (503, "api_error"),
}

# operationId -> the error object's `context`.
CONTEXTS: Mapping[str, str] = {
    "createBearerToken": "api.login",
    "createVppParticipation": "api.vpp_participation_create",
    "listVppParticipations": "api.vpp_participation_list",
    "retrieveVppParticipation": "api.vpp_participation_retrieve",
    "updateVppParticipation": "api.vpp_participation_update",
    # The sandbox control API (openapi/sandbox-control.yaml), under /_sandbox.
    "retrieveSandboxClock": "sandbox.clock_retrieve",
    "updateSandboxClock": "sandbox.clock_update",
    "resetSandbox": "sandbox.reset",
    "loadSandboxWorld": "sandbox.world_load",
    "createSandboxAccount": "sandbox.account_create",
    "deleteSandboxAccount": "sandbox.account_delete",
    "listSandboxRequests": "sandbox.requests_list",
    "createSandboxFault": "sandbox.fault_create",
    "listSandboxFaults": "sandbox.faults_list",
    "deleteSandboxFaults": "sandbox.faults_delete",
}

log = logging.getLogger("mock_server")

_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")

INTERNAL_MESSAGE = "An unexpected error occurred. Retry the request; nothing was changed."

# A 500 on a write can come after the write was committed (a response that fails its own
# validation, an error after the commit): the message must not promise that nothing changed.
_WRITE_HINTS: Mapping[str, str] = {
    "createVppParticipation": (
        "The participation may have been created: list GET /vpp-participations?device_id= "
        "with the device you sent before you retry (a retry of a create that went through is "
        "a 409 participation_exists naming it)."
    ),
    "updateVppParticipation": (
        "The update may have been applied: retrieve GET /vpp-participations/{participation_id} "
        "and compare its timeline with what you sent before you retry."
    ),
    "updateSandboxClock": "The clock may have moved: read GET /_sandbox/clock before you retry.",
    "resetSandbox": (
        "The reset may have happened: list GET /vpp-participations before you retry."
    ),
    "loadSandboxWorld": (
        "The world may have been loaded: list GET /vpp-participations before you retry."
    ),
}
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def internal_message(method: str, operation_id: str | None) -> str:
    """The message of a 500: a read changed nothing; a write may have been applied."""
    if method.upper() in _READS:
        return INTERNAL_MESSAGE
    hint = _WRITE_HINTS.get(
        operation_id or "",
        "The change may have been applied: read the resource back before you retry.",
    )
    return f"An unexpected error occurred after the request was accepted. {hint}"


def status_of(code: str) -> int:
    return CATALOGUE[code][0]


class ApiError(Exception):
    """An error with a catalogue code; raised by handlers, auth and validators."""

    def __init__(self, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        if code not in CATALOGUE:
            raise ValueError(f"{code!r} is not in the error catalogue")
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    @property
    def status_code(self) -> int:
        # Connexion's security layer picks the most specific error by `status_code`.
        return status_of(self.code)


def error_body(
    code: str, message: str, *, context: str, live_mode: bool, now: datetime
) -> dict[str, Any]:
    return {
        "object": "error",
        "type": CATALOGUE[code][1],
        "code": code,
        "message": message,
        "context": context,
        "live_mode": live_mode,
        "time_created": format_time(now),
    }


class Router:
    """The spec's paths as regexes: the operation of a request, and the methods of a path."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, str]]] = []
        for path, item in spec.get("paths", {}).items():
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "/?$"
            ops = {
                method.upper(): op["operationId"]
                for method, op in item.items()
                if isinstance(op, Mapping) and "operationId" in op
            }
            self._routes.append((re.compile(rx), ops))

    def match(self, path: str) -> dict[str, str] | None:
        for rx, ops in self._routes:
            if rx.match(path):
                return ops
        return None

    def operation(self, method: str, path: str) -> str | None:
        """The operationId of a request, or None (no such route or method)."""
        return (self.match(path) or {}).get(method.upper())

    def context(self, method: str, path: str) -> str:
        op = self.operation(method, path)
        return CONTEXTS.get(op, "api") if op else "api"

    def allow(self, path: str) -> str | None:
        ops = self.match(path)
        if ops is None:
            return None
        methods = sorted(ops)
        if "GET" in ops:
            methods.append("HEAD")
        return ", ".join(methods)


def _problem_code(exc: ProblemException) -> str:
    if isinstance(exc, UnsupportedMediaTypeProblem) or exc.status == 415:
        return "unsupported_media_type"
    if exc.status == 401:
        return "authentication_required"
    if exc.status == 400:
        return "invalid_request_body"
    if exc.status == 404:
        return "route_not_found"
    if exc.status == 405:
        return "method_not_allowed"
    return "internal_error"


def install(
    app: Any,
    spec: Mapping[str, Any],
    *,
    caller: Callable[[Mapping[str, str]], Awaitable[tuple[bool, datetime]]],
    authenticated: Callable[[Mapping[str, str]], Awaitable[bool]],
) -> None:
    """Register handlers so that every error leaves the app as a Flatpeak error object.

    `caller(headers)` gives the error body's `live_mode` and `time_created`: the mode and the
    namespace's (virtual) clock of a valid bearer token, else test mode and real time.
    `authenticated(headers)`: the request carries a valid bearer token.
    """
    router = Router(spec)

    async def render(
        request: ConnexionRequest,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> ConnexionResponse:
        live_mode, now = await caller(request.headers)
        body = error_body(
            code,
            message,
            context=router.context(request.method, request.url.path),
            live_mode=live_mode,
            now=now,
        )
        return ConnexionResponse(
            status_code=status_of(code),
            body=json.dumps(body),
            content_type="application/json",
            headers=dict(headers or {}),
        )

    def unexpected(request: ConnexionRequest) -> str:
        return internal_message(
            request.method, router.operation(request.method, request.url.path)
        )

    async def on_api_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, ApiError)
        return await render(request, exc.code, exc.message, exc.headers)

    async def on_domain_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        # LifecycleError, StoreError and AccountError carry a catalogue code and a message.
        code = getattr(exc, "code", "internal_error")
        if code not in CATALOGUE:
            code = "internal_error"
        message = getattr(exc, "message", None) or unexpected(request)
        return await render(request, code, message)

    async def on_problem(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, ProblemException)
        code = _problem_code(exc)
        if code == "unsupported_media_type":
            message = (
                "Send the request body as JSON with the header Content-Type: application/json."
            )
        elif code == "authentication_required":
            message = (
                "Send Authorization: Bearer <token>, with a token from GET /login "
                "(HTTP Basic: your account id and API key)."
            )
        elif code == "internal_error":
            log.error(
                "%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc.detail
            )
            message = unexpected(request)
        else:
            message = str(exc.detail or exc.title)
        return await render(request, code, message, getattr(exc, "headers", None))

    async def on_http(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, HTTPException)
        path = request.url.path
        headers = {}
        if exc.status_code == 405:
            allow = router.allow(path) or ""
            headers["Allow"] = allow
            return await render(
                request,
                "method_not_allowed",
                f"{request.method} is not allowed on {path}. Allowed methods: {allow}.",
                headers,
            )
        if exc.status_code == 404:
            # request.url drops newlines and tabs (urlsplit does): the scope keeps them.
            control = _CONTROL_CHARACTER.search(str(request.scope.get("path", "")))
            if control is not None:
                # Starlette routes no path with a newline in it. Where it would be a VPP
                # operation, the token comes first (rule 14), as on every other request.
                if path.startswith("/vpp-participations") and not await authenticated(
                    request.headers
                ):
                    sent = bool(request.headers.get("authorization"))
                    return await render(
                        request,
                        "token_invalid" if sent else "authentication_required",
                        "Send Authorization: Bearer <token>, with a valid token from GET /login "
                        "(HTTP Basic: your account id and API key).",
                    )
                # Say what is wrong with it.
                return await render(
                    request,
                    "invalid_parameter",
                    f"The path contains the control character U+{ord(control[0]):04X}; ids are "
                    "letters, digits and underscores (vpp_ and 24 lowercase hex characters): "
                    "remove it.",
                )
            return await render(
                request,
                "route_not_found",
                f"There is no route {request.method} {path}. The API serves /login, "
                "/vpp-participations and /vpp-participations/{participation_id}; the "
                "reference is at /ui/ (the sandbox controls at /_sandbox/ui/).",
            )
        if exc.status_code == 415:
            return await render(
                request,
                "unsupported_media_type",
                "Send the request body as JSON with the header Content-Type: application/json.",
            )
        if exc.status_code == 401:
            return await render(request, "authentication_required", str(exc.detail))
        if 400 <= exc.status_code < 500:
            return await render(request, "invalid_parameter", str(exc.detail))
        return await render(request, "internal_error", unexpected(request))

    async def on_decode(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        return await render(
            request,
            "invalid_request_body",
            "The request body is not valid UTF-8 JSON; send it encoded as UTF-8.",
        )

    async def on_refused_write(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        # A document that broke the spec was refused before the write: nothing changed.
        log.error("sandbox bug on %s %s: %s", request.method, request.url.path, exc)
        return await render(request, "internal_error", INTERNAL_MESSAGE)

    async def on_unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return await render(request, "internal_error", unexpected(request))

    handlers: Iterable[tuple[type[Exception], Any]] = (
        (ApiError, on_api_error),
        (LifecycleError, on_domain_error),
        (StoreError, on_domain_error),
        (AccountError, on_domain_error),
        (InvalidDocument, on_refused_write),
        (ProblemException, on_problem),
        (HTTPException, on_http),
        (UnicodeDecodeError, on_decode),
        (Exception, on_unexpected),
    )
    for exc_class, handler in handlers:
        app.add_error_handler(exc_class, handler)

"""One error catalogue: every code the sandbox answers, its status and type, and the error body.

Nothing here knows HTTP frameworks: `mock_server.pipeline` renders every error of a request
through `error_body`, and `mock_server.compat` writes the few answered before a request exists.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from vpp_sandbox.mock_server.lifecycle import format_time

__all__ = [
    "CATALOGUE",
    "CONTEXTS",
    "INTERNAL_MESSAGE",
    "ApiError",
    "Router",
    "error_body",
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
    "operation_in_progress": (409, "invalid_request"),
    "request_too_large": (413, "invalid_request"),
    "unsupported_media_type": (415, "invalid_request"),
    "rate_limited": (429, "rate_limit"),
    "request_header_too_large": (431, "invalid_request"),
    "internal_error": (500, "api_error"),
    "server_busy": (503, "api_error"),
    "store_unavailable": (503, "api_error"),
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

log = logging.getLogger("vpp_sandbox.mock_server")

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
    """The spec's paths as regexes: the operation of a path, and the methods it allows.

    Connexion routes every request once; this table answers only what a route that did not
    match needs (a 404 or a 405 with `Allow`), and the intake's trailing-slash rule.
    """

    def __init__(self, paths: Mapping[str, Any]) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, str]]] = []
        self._paths: dict[str, dict[str, str]] = {}
        for path, item in paths.items():
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"
            ops = {
                method.upper(): op["operationId"]
                for method, op in item.items()
                if isinstance(op, Mapping) and "operationId" in op
            }
            self._routes.append((re.compile(rx), ops))
            self._paths[path] = ops

    def capture(self, operation_id: str) -> re.Pattern[str]:
        """The path of `operation_id` as a regex whose one group is its path parameter."""
        for path, ops in self._paths.items():
            if operation_id in ops.values():
                escaped = re.escape(path)
                return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", escaped) + "$")
        raise KeyError(operation_id)

    def match(self, path: str) -> dict[str, str] | None:
        """The operations of the path (method -> operationId), or None (no such route)."""
        for rx, ops in self._routes:
            if rx.match(path):
                return ops
        return None

    def allow(self, path: str) -> str | None:
        ops = self.match(path)
        if ops is None:
            return None
        methods = sorted(ops)
        if "GET" in ops:
            methods.append("HEAD")
        return ", ".join(methods)

"""Spec-aware faults: a per-namespace rate limit, errors forced per request, and fault rules.

Only failures the spec documents are produced (429 `rate_limited` with `Retry-After`, 500
`internal_error`, 503 `server_busy`), through the one error catalogue, and before the handler
runs, so a faulted request never changes anything. A namespace's fault rules (set through
`POST /_sandbox/faults`, kept in the store) also add latency or cut the answer off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.ratelimit import Bucket, take
from vpp_sandbox.mock_server.request import facts_of, operation_of
from vpp_sandbox.mock_server.store import FaultRule

__all__ = ["FAULT_HEADER", "FORCEABLE", "RULE_OPERATIONS", "RULE_STATUSES", "Buckets",
           "FaultMiddleware"]  # fmt: skip

FAULT_HEADER = b"x-sandbox-fault"
FORCEABLE = {
    "rate_limited": "Rate limit forced by the X-Sandbox-Fault header; retry after 1 second.",
    "internal_error": (
        "Internal error forced by the X-Sandbox-Fault header; nothing was changed. "
        "Retry the request without the header."
    ),
}
T = TypeVar("T")


# The VPP operations a fault rule may name ("*": any of them), and the statuses it may answer.
RULE_OPERATIONS = frozenset(
    {
        "createVppParticipation",
        "listVppParticipations",
        "retrieveVppParticipation",
        "updateVppParticipation",
    }
)
RULE_STATUSES = {429: "rate_limited", 500: "internal_error", 503: "server_busy"}


class Buckets(Protocol):
    def update_rate_bucket(
        self, namespace: Namespace, step: Callable[[Bucket | None], tuple[Bucket, T]]
    ) -> Awaitable[T]:
        """Apply `step` to the namespace's bucket in one transaction (`Store`)."""
        ...

    async def take_fault(self, namespace: Namespace, operation: str) -> FaultRule | None:
        """The namespace's first rule for the operation, used once (`Store.take_fault`)."""
        ...


class FaultMiddleware:
    """Sits after Connexion's security layer: the caller's namespace is known and checked."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        buckets: Buckets,
        rate_limit: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.rate_limit = rate_limit if rate_limit and rate_limit > 0 else None
        # Wall-clock seconds: the buckets live in the store, shared by every process.
        self.wall = wall
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._check(scope)
            rule = await self._rule(scope)
            if rule is not None:
                if rule.drop:
                    await _cut_off(send)
                    return
                if rule.latency_ms:
                    await anyio.sleep(rule.latency_ms / 1000)
                elif rule.status is not None:
                    raise _rule_error(rule)
        await self.app(scope, receive, send)

    async def _rule(self, scope: Scope) -> FaultRule | None:
        facts = facts_of(scope)
        operation = operation_of(scope)
        namespace = facts.caller.namespace
        if not facts.faults or operation not in RULE_OPERATIONS or namespace is None:
            return None  # no rule waits (read with the clock): no store call
        return await self.buckets.take_fault(namespace, operation)

    async def _check(self, scope: Scope) -> None:
        forced = _header(scope, FAULT_HEADER)
        if forced is not None:
            if forced not in FORCEABLE:
                raise ApiError(
                    "invalid_parameter",
                    f"X-Sandbox-Fault {forced!r} is unknown; use one of "
                    f"{', '.join(sorted(FORCEABLE))}, or leave the header out.",
                )
            headers = {"Retry-After": "1"} if forced == "rate_limited" else None
            raise ApiError(forced, FORCEABLE[forced], headers)
        rate = self.rate_limit
        namespace = facts_of(scope).caller.namespace
        if rate is None or namespace is None:
            return
        now = self.wall()
        wait = await self.buckets.update_rate_bucket(namespace, lambda b: take(b, rate, now))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                "rate_limited",
                f"Too many requests for this account and mode (the sandbox allows "
                f"{rate:g} a second). Retry after {seconds} second"
                f"{'s' if seconds > 1 else ''}.",
                {"Retry-After": str(seconds)},
            )


def _rule_error(rule: FaultRule) -> ApiError:
    code = RULE_STATUSES[rule.status or 500]
    left = f" ({rule.remaining} more to come)" if rule.remaining else ""
    message = (
        f"{rule.status} forced by the fault rule {rule.id} of this account and mode"
        f"{left}; nothing was changed. Retry the request"
    )
    if rule.status == 500:
        return ApiError(code, message + ".")
    seconds = rule.retry_after or 1
    return ApiError(
        code,
        f"{message} after {seconds} second{'s' if seconds > 1 else ''}.",
        {"Retry-After": str(seconds)},
    )


async def _cut_off(send: Send) -> None:
    """Start an answer and end the app without finishing it: the server closes the connection
    (uvicorn does so for an answer left incomplete), so the client sees it dropped mid-answer."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"object": "error"', "more_body": True})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1").strip().lower())
    return None

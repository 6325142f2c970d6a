"""Spec-aware faults: a per-namespace rate limit and errors forced per request, on purpose.

Only failures the spec documents are produced (429 `rate_limited` with `Retry-After`, 500
`internal_error`), through the one error catalogue, and before the handler runs, so a faulted
request never changes anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.ratelimit import Bucket, take
from vpp_sandbox.mock_server.request import facts_of

__all__ = ["FAULT_HEADER", "FORCEABLE", "Buckets", "FaultMiddleware"]

FAULT_HEADER = b"x-sandbox-fault"
FORCEABLE = {
    "rate_limited": "Rate limit forced by the X-Sandbox-Fault header; retry after 1 second.",
    "internal_error": (
        "Internal error forced by the X-Sandbox-Fault header; nothing was changed. "
        "Retry the request without the header."
    ),
}
T = TypeVar("T")


class Buckets(Protocol):
    def update_rate_bucket(
        self, namespace: Namespace, step: Callable[[Bucket | None], tuple[Bucket, T]]
    ) -> Awaitable[T]:
        """Apply `step` to the namespace's bucket in one transaction (`Store`)."""
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
        await self.app(scope, receive, send)

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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1").strip().lower())
    return None

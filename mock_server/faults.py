"""Spec-aware faults: a per-namespace rate limit and errors forced per request, on purpose.

Only failures the spec documents are produced (429 `rate_limited` with `Retry-After`, 500
`internal_error`), through the one error catalogue, and before the handler runs, so a faulted
request never changes anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.errors import ApiError

__all__ = ["FAULT_HEADER", "FORCEABLE", "Buckets", "FaultMiddleware"]

FAULT_HEADER = "x-sandbox-fault"
FORCEABLE = {
    "rate_limited": "Rate limit forced by the X-Sandbox-Fault header; retry after 1 second.",
    "internal_error": (
        "Internal error forced by the X-Sandbox-Fault header; nothing was changed. "
        "Retry the request without the header."
    ),
}


class Buckets(Protocol):
    async def take_token(self, namespace: Namespace, rate: float, now: float) -> float:
        """0 when a request may go ahead, else the seconds until it may (`Store.take_token`)."""
        ...


class FaultMiddleware:
    """Sits after Connexion's security layer: it knows the caller's namespace from the token."""

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
        forced = _header(scope, FAULT_HEADER.encode())
        if forced is not None:
            if forced not in FORCEABLE:
                raise ApiError(
                    "invalid_parameter",
                    f"X-Sandbox-Fault {forced!r} is unknown; use one of "
                    f"{', '.join(sorted(FORCEABLE))}, or leave the header out.",
                )
            headers = {"Retry-After": "1"} if forced == "rate_limited" else None
            raise ApiError(forced, FORCEABLE[forced], headers)
        if self.rate_limit is None:
            return
        claims: Any = scope.get("extensions", {}).get("connexion_context", {}).get("token_info")
        if not isinstance(claims, dict) or "account_id" not in claims:
            return
        namespace = Namespace(str(claims["account_id"]), bool(claims.get("live_mode")))
        wait = await self.buckets.take_token(namespace, self.rate_limit, self.wall())
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                "rate_limited",
                f"Too many requests for this account and mode (the sandbox allows "
                f"{self.rate_limit:g} a second). Retry after {seconds} second"
                f"{'s' if seconds > 1 else ''}.",
                {"Retry-After": str(seconds)},
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1").strip().lower())
    return None

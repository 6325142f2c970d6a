"""Spec-aware faults: a per-namespace rate limit and errors forced per request, on purpose.

Only failures the spec documents are produced (429 `rate_limited` with `Retry-After`, 500
`internal_error`), through the one error catalogue, and before the handler runs, so a faulted
request never changes anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from vpp_sandbox.mock_server.errors import ApiError

__all__ = ["FAULT_HEADER", "FORCEABLE", "FaultMiddleware", "TokenBucket"]

FAULT_HEADER = "x-sandbox-fault"
FORCEABLE = {
    "rate_limited": "Rate limit forced by the X-Sandbox-Fault header; retry after 1 second.",
    "internal_error": (
        "Internal error forced by the X-Sandbox-Fault header; nothing was changed. "
        "Retry the request without the header."
    ),
}


@dataclass(slots=True)
class TokenBucket:
    """`rate` requests a second on average, bursts of up to `rate` (at least one)."""

    rate: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take a token; return 0 when allowed, else the seconds until one is available."""
        capacity = max(1.0, self.rate)
        self.tokens = min(capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class FaultMiddleware:
    """Sits after Connexion's security layer: it knows the caller's namespace from the token."""

    def __init__(
        self,
        app: ASGIApp,
        rate_limit: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.rate_limit = rate_limit if rate_limit and rate_limit > 0 else None
        self.monotonic = monotonic
        self.buckets: dict[tuple[str, bool], TokenBucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self._check(scope)
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> None:
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
        key = (str(claims["account_id"]), bool(claims.get("live_mode")))
        now = self.monotonic()
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(
                self.rate_limit, max(1.0, self.rate_limit), now
            )
        wait = bucket.take(now)
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

"""Where handlers get `now`: one injectable clock, asked per namespace (UTC wall time for now)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple, Protocol

__all__ = ["Clock", "Namespace", "SystemClock"]


class Namespace(NamedTuple):
    """Objects live in the (account, mode) namespace that created them."""

    account_id: str
    live_mode: bool


class Clock(Protocol):
    def now(self, namespace: Namespace | None = None) -> datetime:
        """The current time, aware UTC; a namespace may have its own (virtual) time."""
        ...


class SystemClock:
    """Real UTC time, the same for every namespace."""

    def now(self, namespace: Namespace | None = None) -> datetime:
        return datetime.now(UTC)

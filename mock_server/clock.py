"""Where handlers get `now`: one injectable clock, asked per namespace.

`SandboxClock` is the sandbox's virtual time: each (account, mode) namespace follows real UTC
time until it is advanced, set forward or frozen, and never goes back. Its state is kept in the
store (`ClockStore`), so it survives restarts. `SystemClock` is plain wall time for everyone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from vpp_sandbox.mock_server.lifecycle import format_time

__all__ = [
    "Clock",
    "ClockBackwards",
    "ClockState",
    "ClockStore",
    "Namespace",
    "SandboxClock",
    "SystemClock",
]


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


@dataclass(frozen=True, slots=True)
class ClockState:
    """A namespace's virtual time: real time plus `offset`, or `frozen_at` while frozen."""

    offset: timedelta = timedelta(0)
    frozen_at: datetime | None = None
    autopilot: bool = True

    def now(self, real: datetime) -> datetime:
        return self.frozen_at if self.frozen_at is not None else real + self.offset


class ClockStore(Protocol):
    def clock_state(self, namespace: Namespace) -> ClockState | None: ...

    def save_clock_state(self, namespace: Namespace, state: ClockState | None) -> None: ...


class ClockBackwards(Exception):
    """A request to move a namespace's clock back in time (400 clock_cannot_go_back)."""

    code = "clock_cannot_go_back"

    def __init__(self, now: datetime, target: datetime) -> None:
        self.message = (
            f"The sandbox clock of this account and mode is at {format_time(now)}; it only moves "
            f"forward, so it cannot be set to {format_time(target)}. Send a later instant, or "
            "POST /_sandbox/reset to empty this namespace and go back to real time."
        )
        super().__init__(self.message)


def _second(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


class SandboxClock:
    """Per-namespace virtual time over a real clock; the state is persisted in `store`."""

    def __init__(
        self, store: ClockStore, real: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._store = store
        self._real = real
        self._lock = threading.Lock()
        self._cache: dict[Namespace, ClockState] = {}

    def state(self, namespace: Namespace) -> ClockState:
        with self._lock:
            cached = self._cache.get(namespace)
            if cached is None:
                cached = self._store.clock_state(namespace) or ClockState()
                self._cache[namespace] = cached
            return cached

    def now(self, namespace: Namespace | None = None) -> datetime:
        real = self._real()
        if namespace is None:
            return real
        return self.state(namespace).now(real)

    def is_frozen(self, namespace: Namespace) -> bool:
        return self.state(namespace).frozen_at is not None

    def autopilot(self, namespace: Namespace) -> bool:
        return self.state(namespace).autopilot

    def _save(self, namespace: Namespace, state: ClockState) -> None:
        with self._lock:
            self._store.save_clock_state(namespace, state)
            self._cache[namespace] = state

    # -- control ---------------------------------------------------------------------------

    def advance(self, namespace: Namespace, by: timedelta) -> datetime:
        """Move the namespace's time forward by `by` (frozen or not); returns the new now."""
        if by < timedelta(0):
            raise ClockBackwards(self.now(namespace), self.now(namespace) + by)
        state = self.state(namespace)
        if state.frozen_at is not None:
            state = replace(state, frozen_at=state.frozen_at + by)
        else:
            state = replace(state, offset=state.offset + by)
        self._save(namespace, state)
        return self.now(namespace)

    def set(self, namespace: Namespace, instant: datetime) -> datetime:
        """Move the namespace's time forward to `instant`; never back."""
        real = self._real()
        state = self.state(namespace)
        now = state.now(real)
        if _second(instant) < _second(now):
            raise ClockBackwards(now, instant)
        if instant < now:  # the same second: keep the clock where it is
            return now
        if state.frozen_at is not None:
            state = replace(state, frozen_at=instant)
        else:
            state = replace(state, offset=instant - real)
        self._save(namespace, state)
        return self.now(namespace)

    def freeze(self, namespace: Namespace, frozen: bool) -> datetime:
        """Stop the namespace's time at the current second, or let it run on from there."""
        real = self._real()
        state = self.state(namespace)
        if frozen and state.frozen_at is None:
            state = replace(state, frozen_at=_second(state.now(real)))
        elif not frozen and state.frozen_at is not None:
            state = replace(state, offset=state.frozen_at - real, frozen_at=None)
        self._save(namespace, state)
        return self.now(namespace)

    def set_autopilot(self, namespace: Namespace, on: bool) -> None:
        self._save(namespace, replace(self.state(namespace), autopilot=on))

    def reset(self, namespace: Namespace) -> None:
        """Back to real time, running, autopilot on."""
        with self._lock:
            self._store.save_clock_state(namespace, None)
            self._cache.pop(namespace, None)

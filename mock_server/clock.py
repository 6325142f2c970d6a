"""Where handlers get `now`: one injectable clock, asked per namespace.

`SandboxClock` is the sandbox's virtual time: each (account, mode) namespace follows real UTC
time until it is advanced, set forward or frozen, and never goes back. Its state is kept in the
store (`ClockStore`) and read from it on every request, never cached, so every process serving
the same data sees one clock and it survives restarts. `SystemClock` is plain wall time.
"""

from __future__ import annotations

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
    def real(self) -> datetime:
        """Real time, aware UTC."""
        ...

    async def now(self, namespace: Namespace) -> datetime:
        """The namespace's current time, aware UTC (it may be virtual)."""
        ...


class SystemClock:
    """Real UTC time, the same for every namespace."""

    def real(self) -> datetime:
        return datetime.now(UTC)

    async def now(self, namespace: Namespace) -> datetime:
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
    async def clock_state(self, namespace: Namespace) -> ClockState | None: ...

    async def save_clock_state(self, namespace: Namespace, state: ClockState | None) -> None: ...


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
        self.real = real

    async def state(self, namespace: Namespace) -> ClockState:
        return await self._store.clock_state(namespace) or ClockState()

    async def now(self, namespace: Namespace) -> datetime:
        return (await self.state(namespace)).now(self.real())

    # -- control ---------------------------------------------------------------------------

    async def advance(self, namespace: Namespace, by: timedelta) -> datetime:
        """Move the namespace's time forward by `by` (frozen or not); returns the new now."""
        state = await self.state(namespace)
        now = state.now(self.real())
        if by < timedelta(0):
            raise ClockBackwards(now, now + by)
        if state.frozen_at is not None:
            state = replace(state, frozen_at=state.frozen_at + by)
        else:
            state = replace(state, offset=state.offset + by)
        await self._store.save_clock_state(namespace, state)
        return state.now(self.real())

    async def set(self, namespace: Namespace, instant: datetime) -> datetime:
        """Move the namespace's time forward to `instant`; never back."""
        real = self.real()
        state = await self.state(namespace)
        now = state.now(real)
        if _second(instant) < _second(now):
            raise ClockBackwards(now, instant)
        if instant < now:  # the same second: keep the clock where it is
            return now
        if state.frozen_at is not None:
            state = replace(state, frozen_at=instant)
        else:
            state = replace(state, offset=instant - real)
        await self._store.save_clock_state(namespace, state)
        return state.now(self.real())

    async def freeze(self, namespace: Namespace, frozen: bool) -> datetime:
        """Stop the namespace's time at the current second, or let it run on from there."""
        real = self.real()
        state = await self.state(namespace)
        if frozen and state.frozen_at is None:
            state = replace(state, frozen_at=_second(state.now(real)))
        elif not frozen and state.frozen_at is not None:
            state = replace(state, offset=state.frozen_at - real, frozen_at=None)
        await self._store.save_clock_state(namespace, state)
        return state.now(self.real())

    async def set_autopilot(self, namespace: Namespace, on: bool) -> None:
        state = await self.state(namespace)
        await self._store.save_clock_state(namespace, replace(state, autopilot=on))

    async def reset(self, namespace: Namespace) -> None:
        """Back to real time, running, autopilot on."""
        await self._store.save_clock_state(namespace, None)

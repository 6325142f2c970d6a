"""The autopilot: plays each participation's scenario as its namespace's clock moves.

There are no background threads. Every request reads its namespace's clock once and, unless
the autopilot is off, catches the namespace up to that instant: every move due by then is
applied at its scheduled time (`scenarios.advance`). The store keeps each row's next due time in
an index (`next_due` below is the rule it is given), so a request with nothing due costs one
index probe, and applies due moves in batches under the namespace's lock, so concurrent
catch-ups (other requests, other processes) apply each move exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import anyio

from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.lifecycle import LifecycleError, Participation
from vpp_sandbox.mock_server.scenarios import advance, next_step
from vpp_sandbox.mock_server.store import Store

__all__ = ["BATCH", "catch_up", "next_due"]

log = logging.getLogger("vpp_sandbox.mock_server")

# Participations moved per transaction: small enough that other requests (and, on SQLite, other
# writers) get their turn between batches of a big catch-up.
BATCH = 10


def next_due(p: Participation) -> datetime | None:
    """When the autopilot's next move of `p` is due (the store's indexed column), or None."""
    due = next_step(p)
    return None if due is None else due.at


def _move(until: datetime) -> Callable[[Participation], Participation | None]:
    def move(p: Participation) -> Participation | None:
        try:
            return advance(p, until)
        except LifecycleError:  # pragma: no cover - a scenario bug: stop this one, never 500
            log.exception("autopilot could not advance %s; it stays where it is", p.id)
            return None

    return move


async def catch_up(store: Store, namespace: Namespace, now: datetime, *, due: bool = False) -> int:
    """Apply every move due in the namespace by `now`; returns how many participations moved.

    `due`: the caller already knows a move is due (it read the earliest due time).
    """
    if not due and not await store.has_due(namespace, now):
        return 0
    move = _move(now)
    moved = 0
    while True:
        done = await store.apply_due(namespace, now, move, batch=BATCH)
        moved += done.moved
        if not done.more:
            return moved
        await anyio.sleep(0)  # let other requests in between batches

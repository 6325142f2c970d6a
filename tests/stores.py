"""Stores for tests: an in-memory SQLite store wired like the server's, and a sync runner."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import anyio

from vpp_sandbox.mock_server.lifecycle import Participation
from vpp_sandbox.mock_server.store import Store
from vpp_sandbox.mock_server.stores import open_store

__all__ = ["every", "memory_store", "sync"]

T = TypeVar("T")


def memory_store() -> Store:
    return open_store(":memory:")


def sync(awaitable: Awaitable[T]) -> T:
    """Run one store call from a plain (sync) test."""

    async def run() -> T:
        return await awaitable

    return anyio.run(run)


def every(store: Store) -> list[Participation]:
    """Every stored participation, oldest first (what a test checks nothing was added to)."""

    async def collect() -> list[Participation]:
        return [p async for p in store.participations()]

    return anyio.run(collect)

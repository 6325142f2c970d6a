"""Stores for tests: an in-memory SQLite store wired like the server's, and a sync runner."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import anyio

from vpp_sandbox.mock_server.store import Store
from vpp_sandbox.mock_server.stores import open_store

__all__ = ["memory_store", "sync"]

T = TypeVar("T")


def memory_store() -> Store:
    return open_store(":memory:")


def sync(awaitable: Awaitable[T]) -> T:
    """Run one store call from a plain (sync) test."""

    async def run() -> T:
        return await awaitable

    return anyio.run(run)

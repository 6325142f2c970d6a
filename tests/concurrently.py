"""Calls run at once, each on a thread of its own, for tests against real servers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["together"]


def together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at once from threads (a barrier releases them); their results in order."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results

"""Lists: newest first, limits, cursors in both directions, has_more, filters, stability."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.sandbox_client import Sandbox, new_id, sandbox_on
from vpp_sandbox.mock_server.clock import SandboxClock


class SteppingTime:
    """Real time that moves one second per reading, so creation times differ (and some tie)."""

    def __init__(self, tie_every: int = 3) -> None:
        self.t = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
        self.reads = 0
        self.tie_every = tie_every

    def __call__(self) -> datetime:
        self.reads += 1
        if self.reads % self.tie_every:
            self.t += timedelta(seconds=1)
        return self.t


@pytest.fixture(params=["sqlite", "postgres"])
def sb(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with sandbox_on(request.param, request) as sandbox:
        sandbox.app.state.clock = SandboxClock(sandbox.store, SteppingTime())
        yield sandbox


def ids(page: dict[str, Any]) -> list[str]:
    return [p["id"] for p in page["data"]]


def newest_first(sb: Sandbox, n: int, **body: Any) -> list[str]:
    made = [sb.create(**body).json() for _ in range(n)]
    made.sort(key=lambda p: (p["time_created"], p["id"]), reverse=True)
    return [p["id"] for p in made]


def test_default_limit_is_30_and_order_is_newest_first(sb: Sandbox) -> None:
    expected = newest_first(sb, 35)
    page = sb.list().json()
    assert page["object"] == "list" and page["url"] == "/vpp-participations"
    assert ids(page) == expected[:30] and page["has_more"] is True
    assert sb.list(limit=100).json()["has_more"] is False


def test_walk_forward_then_backward(sb: Sandbox) -> None:
    expected = newest_first(sb, 11)
    seen: list[str] = []
    pages = []
    cursor: dict[str, Any] = {}
    while True:
        page = sb.list(limit=4, **cursor).json()
        pages.append(ids(page))
        seen += ids(page)
        if not page["has_more"]:
            break
        cursor = {"starting_after": ids(page)[-1]}
    assert seen == expected
    assert [len(p) for p in pages] == [4, 4, 3]
    # Backward from the last page: the same pages, has_more until the first one.
    back = sb.list(limit=4, ending_before=pages[2][0]).json()
    assert ids(back) == pages[1] and back["has_more"] is True
    back = sb.list(limit=4, ending_before=pages[1][0]).json()
    assert ids(back) == pages[0] and back["has_more"] is False
    empty = sb.list(limit=4, ending_before=expected[0]).json()
    assert ids(empty) == [] and empty["has_more"] is False
    end = sb.list(limit=4, starting_after=expected[-1]).json()
    assert ids(end) == [] and end["has_more"] is False


def test_exact_multiple_of_limit_has_no_phantom_page(sb: Sandbox) -> None:
    expected = newest_first(sb, 6)
    first = sb.list(limit=3).json()
    assert ids(first) == expected[:3] and first["has_more"] is True
    second = sb.list(limit=3, starting_after=expected[2]).json()
    assert ids(second) == expected[3:] and second["has_more"] is False


def test_device_filter(sb: Sandbox) -> None:
    device = new_id("dev")
    mine = newest_first(sb, 5, device_id=device)
    newest_first(sb, 5)
    page = sb.list(device_id=device, limit=2).json()
    assert ids(page) == mine[:2] and page["has_more"] is True
    rest = sb.list(device_id=device, starting_after=mine[1]).json()
    assert ids(rest) == mine[2:] and rest["has_more"] is False
    assert sb.list(device_id=new_id("dev")).json()["data"] == []


def test_inserts_while_walking_never_repeat_an_item(sb: Sandbox) -> None:
    expected = newest_first(sb, 9)
    first = sb.list(limit=3).json()
    newer = newest_first(sb, 5)  # created after the walk started: newest, so before the cursor
    seen = ids(first)
    cursor = seen[-1]
    while True:
        page = sb.list(limit=3, starting_after=cursor).json()
        seen += ids(page)
        if not page["has_more"]:
            break
        cursor = ids(page)[-1]
    assert seen == expected
    assert not set(newer) & set(seen)
    # Walking back to the start now reveals the newer ones, each once.
    top = sb.list(limit=100, ending_before=expected[0]).json()
    assert ids(top) == newer


def test_ties_on_time_created_are_broken_by_id(sb: Sandbox) -> None:
    newest_first(sb, 12)
    data = sb.list(limit=100).json()["data"]
    keys = [(p["time_created"], p["id"]) for p in data]
    assert keys == sorted(keys, reverse=True)
    assert len({p["time_created"] for p in data}) < len(data)  # the clock made ties

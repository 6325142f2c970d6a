"""The pagination suite (rule 15): full walks both ways over two interleaved devices, the
default and large limits, full last pages, and the parameters that must be refused.

Each page is also judged by the per-response rule 15 checks, which know every participation
the run created: a page must hold all that match it up to its limit and skip none.
"""

from __future__ import annotations

from typing import Any

from vpp_sandbox.contract_tests import scripted_checks as sc
from vpp_sandbox.contract_tests.ledger import Observation
from vpp_sandbox.contract_tests.report import Options, SuiteResult
from vpp_sandbox.contract_tests.session import Session, random_id
from vpp_sandbox.contract_tests.suites import obj, timed

__all__ = ["run_pagination"]


def run_pagination(session: Session, options: Options) -> SuiteResult:
    def body() -> None:
        small, big = random_id("dev"), random_id("dev")
        n_small, n_big = max(3, options.page_items), max(31, min(options.big_page, 100))
        # Interleaved: the two devices' participations alternate in the namespace's order, so a
        # cursor or filter that counts positions in the unfiltered list shows up.
        order = [small, big] * n_small + [big] * (n_big - n_small)
        made: dict[str, list[tuple[str, str]]] = {small: [], big: []}
        for device in order:
            # A device holds one open participation per programme: a fresh programme each time.
            answer = session.create(device_id=device)
            if not session.expect(sc.well_formed_create_accepted, answer):
                return
            made[device].append((str(obj(answer)["time_created"]), str(obj(answer)["id"])))
        # Newest first by time_created, ties by id, both descending (rule 15).
        newest = {d: [pid for _, pid in sorted(m, reverse=True)] for d, m in made.items()}
        for size in sorted({1, 2, 3, n_small - 1, n_small, n_small + 1}):
            _walk(session, small, size, newest[small], forward=True)
            _walk(session, small, size, newest[small], forward=False)
        # The default page (30), limits that divide the device's items (full last pages), 100.
        for limit in _big_limits(n_big):
            _walk(session, big, limit, newest[big], forward=True)
            _walk(session, big, limit, newest[big], forward=False)
        # The whole namespace: per-response checks compare with every participation known.
        session.list()
        session.list(limit=100)
        session.list(limit=100, starting_after=newest[big][n_big // 2])
        for query, what in (
            ({"device_id": big, "starting_after": newest[big][0],
              "ending_before": newest[big][-1]}, "both cursors at once"),
            ({"starting_after": random_id("vpp")}, "a cursor the server never issued"),
            ({"ending_before": random_id("vpp")}, "an ending_before the server never issued"),
            ({"limit": 0}, "limit=0"),
            ({"limit": 101}, "limit=101"),
            ({"limit": "ten"}, "limit=ten"),
            ({"limit": "2.5"}, "limit=2.5"),
        ):
            session.expect(sc.invalid_list_parameter_refused, session.list(**query), what)

    return timed("pagination", session, body)


def _big_limits(n: int) -> list[int | None]:
    """None (the default 30), a divisor of n (the walk ends on a full page), n, n - 1, 100."""
    divisor = next((d for d in range(n // 2, 1, -1) if n % d == 0 and d != 30), None)
    return [None, *sorted({x for x in (divisor, n - 1, n, 100) if x is not None and x <= 100})]


def _walk(
    session: Session, device: str, limit: int | None, expected: list[str], forward: bool
) -> None:
    base: dict[str, Any] = {"device_id": device}
    if limit is not None:
        base["limit"] = limit
    query = dict(base)
    if not forward:
        query["ending_before"] = expected[-1]  # start past the oldest item, walk back
    pages = [Observation(session.list(**query), None)]
    for _ in range(len(expected) + 2):
        data = obj(pages[-1].exchange)
        items = data.get("data") or []
        if not data.get("has_more") or not items or pages[-1].exchange.status != 200:
            break
        cursor = ("starting_after", items[-1]["id"]) if forward else ("ending_before",
                                                                       items[0]["id"])
        pages.append(Observation(session.list(**base, **dict([cursor])), None))
    if forward:
        session.expect(sc.pages_walk_every_item_once, pages, expected)
    else:
        pages.reverse()
        session.expect(sc.pages_walk_back_every_item_once, pages, expected[:-1])

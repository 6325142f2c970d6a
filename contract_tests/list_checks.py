"""Checks of list answers against their parameters and every participation the run knows of
(rule 15). Each is registered with its rule."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from vpp_sandbox.contract_tests import schemas
from vpp_sandbox.contract_tests.findings import broken
from vpp_sandbox.contract_tests.ledger import Known, Observation
from vpp_sandbox.contract_tests.object_checks import response_check

__all__ = [
    "list_page_is_complete",
    "list_page_is_well_formed",
    "list_page_respects_cursor",
    "list_request_accepted",
]


def _page(obs: Observation) -> tuple[list[dict[str, Any]], int] | None:
    """Items and limit of a 2xx list answer to well-formed parameters."""
    ex = obs.exchange
    if obs.operation != "listVppParticipations" or not 200 <= ex.status < 300:
        return None
    if schemas.request_problem(obs.operation, None, ex.query) is not None:
        return None
    if "starting_after" in ex.query and "ending_before" in ex.query:
        return None
    data = ex.data.get("data") if isinstance(ex.data, dict) else None
    if not isinstance(data, list):
        return None
    return [p for p in data if isinstance(p, dict)], int(ex.query.get("limit", "30"))


@response_check("15")
def list_page_is_well_formed(obs: Observation) -> bool:
    """Rule 15: a page is newest first, within `limit`, of the filtered device only, and never
    answers both cursors."""
    ex = obs.exchange
    if obs.operation != "listVppParticipations" or not 200 <= ex.status < 300:
        return False
    if "starting_after" in ex.query and "ending_before" in ex.query:
        raise broken("-", f"both cursors accepted with {ex.status}; expected 400")
    data = ex.data.get("data") if isinstance(ex.data, dict) else None
    if not isinstance(data, list) or not isinstance(ex.data.get("has_more"), bool):
        raise broken("-", "a list needs `data` (array) and `has_more` (boolean)")
    try:
        limit = int(ex.query.get("limit", 30))
    except ValueError:
        limit = 100
    if len(data) > limit:
        raise broken("-", f"{len(data)} items for limit {limit}")
    items = [p for p in data if isinstance(p, dict)]
    device = ex.query.get("device_id")
    for p in items:
        if device is not None and p.get("device_id") != device:
            raise broken(p.get("id"), f"listed for device_id={device} but is of device "
                                      f"{p.get('device_id')}")
    keys = [(str(p.get("time_created")), str(p.get("id"))) for p in items]
    for a, b in itertools.pairwise(keys):
        if a <= b:
            raise broken(b[1], f"listed after {a[1]} but not older (newest first)")
    if len(set(k[1] for k in keys)) != len(keys):
        raise broken("-", "the same participation twice on one page")
    return True


_LIST_PARAMETERS = frozenset({"device_id", "limit", "starting_after", "ending_before"})


@response_check("15")
def list_request_accepted(obs: Observation) -> bool:
    """Rule 15: a list with valid parameters (limit 1-100, at most one cursor, and that one a
    participation of the namespace) is answered, not refused."""
    ex = obs.exchange
    if obs.operation != "listVppParticipations" or obs.identity is None:
        return False
    query = ex.query
    if not set(query) <= _LIST_PARAMETERS:
        return False  # whether unknown parameters are refused, the contract does not say
    if schemas.request_problem(obs.operation, None, query) is not None:
        return False
    cursors = [query[c] for c in ("starting_after", "ending_before") if c in query]
    known = {k.id for k in obs.namespace}
    if len(cursors) > 1 or any(c not in known for c in cursors):
        return False
    if ex.status == 400:
        message = ex.data.get("message") if isinstance(ex.data, dict) else ""
        raise broken("-", f"a valid list request ({_describe(query)}) answered 400: {message}")
    return True


def _key(k: Known) -> tuple[str, str]:
    return (k.time_created, k.id)


def _cursor(obs: Observation) -> tuple[str, Known] | None:
    """The direction and the known participation of the page's cursor, if any."""
    known = {k.id: k for k in obs.namespace}
    for direction in ("starting_after", "ending_before"):
        value = obs.exchange.query.get(direction)
        if value is not None:
            return (direction, known[value]) if value in known else None
    return None


@response_check("15")
def list_page_respects_cursor(obs: Observation) -> bool:
    """Rule 15: after `starting_after` come only older participations, before `ending_before`
    only newer ones, and never the cursor itself."""
    page = _page(obs)
    cursor = _cursor(obs) if page is not None else None
    if page is None or cursor is None:
        return False
    direction, at = cursor
    for p in page[0]:
        key = (str(p.get("time_created")), str(p.get("id")))
        wrong = key >= _key(at) if direction == "starting_after" else key <= _key(at)
        if wrong:
            side = "older" if direction == "starting_after" else "newer"
            raise broken(p.get("id"), f"on the page {direction}={at.id} but not {side} than it")
    return True


@response_check("15")
def list_page_is_complete(obs: Observation) -> bool:
    """Rule 15: a page holds every participation known to match it up to `limit` (default 30),
    skips none, and says has_more while known ones lie beyond it."""
    page = _page(obs)
    if page is None or obs.identity is None:
        return False
    items, limit = page
    query = obs.exchange.query
    device = query.get("device_id")
    known = [k for k in obs.namespace if device is None or k.device_id == device]
    forward = "ending_before" not in query
    if "starting_after" in query or "ending_before" in query:
        cursor = _cursor(obs)
        if cursor is None:
            return False
        at = _key(cursor[1])
        known = [k for k in known if (_key(k) < at if forward else _key(k) > at)]
    on_page = {str(p.get("id")) for p in items}
    missing = sorted((k for k in known if k.id not in on_page), key=_key, reverse=True)
    if not missing:
        return True
    where = f"a page of {len(items)} for limit {limit}"
    if len(items) < limit:
        raise broken(missing[0].id, f"matches the list ({_describe(query)}) but is missing "
                                    f"from {where}")
    if isinstance(obs.exchange.data, dict) and obs.exchange.data.get("has_more") is not True:
        raise broken(missing[0].id, f"lies beyond {where} ({_describe(query)}) but has_more is "
                                    f"{obs.exchange.data.get('has_more')}")
    keys = [(str(p.get("time_created")), str(p.get("id"))) for p in items]
    if keys:
        gap = [k for k in missing if (_key(k) > min(keys) if forward else _key(k) < max(keys))]
        if gap:
            raise broken(gap[0].id, f"skipped: it belongs within {where} ({_describe(query)}) "
                                    "but is not on it")
    return True


def _describe(query: Mapping[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(query.items())) or "no parameters"

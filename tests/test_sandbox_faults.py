"""Fault rules of the control API: per namespace, in the store, each call used up once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.sandbox_client import ACCOUNT_A, ACCOUNT_B, make_sandbox
from tests.stores import memory_store, sync
from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.control import MAX_FAULT_RULES
from vpp_sandbox.mock_server.store import FaultRule


def rule(sandbox: Any, body: dict[str, Any], **who: Any) -> Any:
    return sandbox.client.post("/_sandbox/faults", json=body, headers=sandbox.headers(**who))


def test_the_next_n_calls_answer_the_status_then_the_operation_works_again() -> None:
    sandbox = make_sandbox()
    made = rule(sandbox, {"operation": "createVppParticipation", "status": 429, "times": 2,
                          "retry_after": 3})  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["remaining"] == 2 and made.json()["id"].startswith("flt_")
    first, second, third = (sandbox.create() for _ in range(3))
    for refused in (first, second):
        assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
        assert refused.json()["code"] == "rate_limited"
    assert third.status_code == 201, third.text
    # Only the refused creates' namespace and operation: nothing was created by them.
    assert [p["id"] for p in sandbox.list().json()["data"]] == [third.json()["id"]]
    assert sandbox.list().status_code == 200
    assert sandbox.client.get("/_sandbox/faults", headers=sandbox.headers()).json()["data"] == []


def test_a_rule_touches_only_its_namespace_and_operation() -> None:
    sandbox = make_sandbox()
    assert rule(sandbox, {"operation": "*", "status": 503}).status_code == 201
    assert sandbox.create(account_id=ACCOUNT_B).status_code == 201
    assert sandbox.create(live=True).status_code == 201
    busy = sandbox.list()
    assert busy.status_code == 503 and busy.json()["code"] == "server_busy"
    assert busy.headers["retry-after"] == "1"
    assert sandbox.list().status_code == 200
    assert rule(sandbox, {"operation": "updateVppParticipation", "status": 500}).status_code == 201
    assert sandbox.list().status_code == 200  # another operation
    assert sandbox.create().status_code == 201


def test_latency_delays_the_answer_and_changes_nothing_else() -> None:
    sandbox = make_sandbox()
    assert (
        rule(sandbox, {"operation": "listVppParticipations", "latency_ms": 300}).status_code == 201
    )
    started = time.monotonic()
    assert sandbox.list().status_code == 200
    assert time.monotonic() - started >= 0.3
    assert sandbox.client.get("/_sandbox/faults", headers=sandbox.headers()).json()["data"] == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"operation": "deleteEverything", "status": 500}, "createVppParticipation"),
        ({"operation": "createSandboxAccount", "status": 500}, "not a VPP operation"),
        ({"operation": "*"}, "exactly one of"),
        ({"operation": "*", "status": 429, "drop": True}, "exactly one of"),
        ({"operation": "*", "status": 500, "retry_after": 2}, "retry_after goes with"),
        ({"operation": "*", "status": 404}, "status"),
        ({"operation": "*", "status": 429, "times": 101}, "times"),
        ({"operation": "*", "latency_ms": 60000}, "latency_ms"),
    ],
)
def test_a_bad_rule_is_a_400_that_says_what_to_send(body: dict[str, Any], says: str) -> None:
    sandbox = make_sandbox()
    r = rule(sandbox, body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request_body" and says in r.json()["message"], r.text
    assert r.json()["context"] == "sandbox.fault_create"


def test_a_namespace_keeps_a_bounded_number_of_rules_and_can_delete_them() -> None:
    sandbox = make_sandbox()
    for _ in range(MAX_FAULT_RULES):
        assert rule(sandbox, {"operation": "*", "status": 500, "times": 100}).status_code == 201
    full = rule(sandbox, {"operation": "*", "status": 500})
    assert full.status_code == 400 and "DELETE /_sandbox/faults" in full.json()["message"]
    assert rule(sandbox, {"operation": "*", "status": 500}, live=True).status_code == 201
    gone = sandbox.client.delete("/_sandbox/faults", headers=sandbox.headers())
    assert gone.json() == {"object": "sandbox_faults_deleted", "deleted": MAX_FAULT_RULES}
    assert sandbox.list().status_code == 200
    assert sandbox.list(live=True).status_code == 500
    # A reset empties the namespace of its rules too.
    assert rule(sandbox, {"operation": "*", "status": 500}).status_code == 201
    sandbox.client.post("/_sandbox/reset", headers=sandbox.headers())
    assert sandbox.list().status_code == 200


def _rule(times: int, n: int) -> FaultRule:
    return FaultRule(f"flt_{n:024x}", "*", 500, None, None, False, times, times, "x")


def test_concurrent_calls_use_each_rule_exactly_its_times_and_the_cap_holds() -> None:
    store = memory_store()
    ns = Namespace(ACCOUNT_A, False)

    async def race() -> tuple[list[bool], list[Any]]:
        added = await asyncio.gather(
            *(store.add_fault(ns, _rule(3, i), admit=lambda held: held < 5) for i in range(12))
        )
        taken = await asyncio.gather(*(store.take_fault(ns, "listVppParticipations")
                                       for _ in range(40)))  # fmt: skip
        return list(added), list(taken)

    added, taken = sync(race())
    assert added.count(True) == 5
    assert len([t for t in taken if t is not None]) == 15
    assert sync(store.faults(ns)) == []


def test_the_journal_as_a_har_log_lists_what_the_sandbox_saw_oldest_first() -> None:
    sandbox = make_sandbox()
    created = sandbox.create().json()
    sandbox.client.post(
        f"/vpp-participations/{created['id']}",
        json={"participation_state": [{"state": "ACTIVE", "status": "IN_PROGRESS"}]},
        headers=sandbox.headers(),
    )
    sandbox.list(limit=2)
    har = sandbox.client.get(
        "/_sandbox/requests", params={"format": "har", "limit": 10}, headers=sandbox.headers()
    ).json()
    assert har["log"]["version"] == "1.2" and har["log"]["creator"]["name"] == "vpp-sandbox"
    entries = har["log"]["entries"][1:]  # after the token's GET /login
    assert [(e["request"]["method"], e["response"]["status"]) for e in entries] == [
        ("POST", 201),
        ("POST", 409),
        ("GET", 200),
    ]
    assert entries[2]["request"]["url"].endswith("/vpp-participations?limit=2")
    assert entries[2]["request"]["queryString"] == [{"name": "limit", "value": "2"}]
    refused = entries[1]["response"]
    assert refused["statusText"] == "Conflict"
    assert '"invalid_state_transition"' in refused["content"]["text"]
    for entry in entries:  # the fields HAR 1.2 requires
        assert {"startedDateTime", "time", "request", "response", "cache", "timings"} <= set(entry)
        assert {"method", "url", "httpVersion", "cookies", "headers", "queryString",
                "headersSize", "bodySize"} <= set(entry["request"])  # fmt: skip
        assert {"status", "statusText", "httpVersion", "cookies", "headers", "content",
                "redirectURL", "headersSize", "bodySize"} <= set(entry["response"])  # fmt: skip

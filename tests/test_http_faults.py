"""Spec-aware faults: the opt-in rate limit and errors forced with X-Sandbox-Fault."""

from __future__ import annotations

from typing import Any

from openapi_schema_validator import OAS30Validator

from tests.sandbox_client import ACCOUNT_B, make_sandbox
from tests.spec_tools import resolve_refs
from tests.stores import memory_store, sync
from vpp_sandbox import openapi
from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.faults import FaultMiddleware
from vpp_sandbox.mock_server.ratelimit import take


def _error_validator() -> OAS30Validator:
    spec: dict[str, Any] = openapi.load()
    return OAS30Validator(resolve_refs(spec, spec["components"]["schemas"]["Error"]))


def test_token_bucket_allows_the_rate_then_says_how_long_to_wait() -> None:
    store = memory_store()
    ns = Namespace(ACCOUNT_B, False)

    def take_at(namespace: Namespace, now: float) -> float:
        wait: float = sync(store.update_rate_bucket(namespace, lambda b: take(b, 2.0, now)))
        return wait

    assert take_at(ns, 0.0) == 0.0
    assert take_at(ns, 0.0) == 0.0
    assert take_at(ns, 0.0) == 0.5
    assert take_at(ns, 0.5) == 0.0  # half a second later a token is back
    assert take_at(Namespace(ACCOUNT_B, True), 0.0) == 0.0


def test_rate_limit_answers_429_with_retry_after_per_namespace() -> None:
    sandbox = make_sandbox(rate_limit=3)
    clock = [100.0]
    middleware = _fault_middleware(sandbox.app)
    middleware.wall = lambda: clock[0]
    statuses = [sandbox.list().status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = sandbox.list()
    assert limited.headers["retry-after"] == "1"
    body = limited.json()
    assert not list(_error_validator().iter_errors(body))
    assert (body["type"], body["code"]) == ("rate_limit", "rate_limited")
    assert body["context"] == "api.vpp_participation_list"
    assert "Retry after 1 second" in body["message"]
    # Other namespaces have their own budget; time refills this one.
    assert sandbox.list(account_id=ACCOUNT_B).status_code == 200
    assert sandbox.list(live=True).status_code == 200
    clock[0] += 1.0
    assert sandbox.list().status_code == 200


def test_no_rate_limit_by_default() -> None:
    sandbox = make_sandbox()
    assert all(sandbox.list().status_code == 200 for _ in range(50))


def test_forced_faults_change_nothing_and_use_the_error_object() -> None:
    sandbox = make_sandbox()
    created = sandbox.create().json()
    pid = created["id"]
    for fault, status, kind in (
        ("rate_limited", 429, "rate_limit"),
        ("internal_error", 500, "api_error"),
    ):
        r = sandbox.client.post(
            f"/vpp-participations/{pid}",
            json={"participation_state": [{"state": "FAILED", "status": "IN_PROGRESS"}]},
            headers={**sandbox.headers(), "X-Sandbox-Fault": fault},
        )
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert (body["type"], body["code"]) == (kind, fault)
        assert body["context"] == "api.vpp_participation_update"
        assert not list(_error_validator().iter_errors(body))
    assert sandbox.get(pid).json() == created


def test_an_unknown_forced_fault_is_a_400_that_lists_the_choices() -> None:
    sandbox = make_sandbox()
    r = sandbox.client.get(
        "/vpp-participations", headers={**sandbox.headers(), "X-Sandbox-Fault": "teapot"}
    )
    assert r.status_code == 400
    assert "internal_error, rate_limited" in r.json()["message"]


def test_faults_come_after_authentication() -> None:
    sandbox = make_sandbox()
    r = sandbox.client.get("/vpp-participations", headers={"X-Sandbox-Fault": "internal_error"})
    assert r.status_code == 401


def _fault_middleware(app: Any) -> FaultMiddleware:
    """Our fault layer in the app's middleware stack (built on the first request)."""
    app.test_client().get("/openapi.json")
    return next(m for m in app.middleware.middleware_stack if isinstance(m, FaultMiddleware))

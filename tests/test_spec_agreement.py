"""Schemathesis, openapi-core and the suite agree with the sandbox on every status and header:
answers of every kind (success, 400, 401, 404, 409, 413, 415, 429, 431, 500) of every
operation, from `vpp-sandbox serve`, are valid for all three readers of the spec."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
import schemathesis
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from tests.contract_defects import build
from tests.serve_process import served
from vpp_sandbox import openapi
from vpp_sandbox.contract_tests import schemas
from vpp_sandbox.contract_tests.ledger import operation_of
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

VPP = "/vpp-participations"
LABELS = {
    "createBearerToken": "GET /login",
    "createVppParticipation": "POST /vpp-participations",
    "listVppParticipations": "GET /vpp-participations",
    "retrieveVppParticipation": "GET /vpp-participations/{participation_id}",
    "updateVppParticipation": "POST /vpp-participations/{participation_id}",
}


@pytest.fixture(scope="module")
def answers() -> Iterator[list[tuple[str, str, requests.Response]]]:
    """(method, path, answer) of every kind, from a served sandbox."""
    account = DEFAULT_ACCOUNT[0]
    with served("--db", ":memory:") as running:
        base = running.base_url
        basic = (account.account_id, account.api_key)
        token = requests.get(base + "/login", auth=basic, timeout=10).json()["bearer_token"]
        auth = {"Authorization": f"Bearer {token}"}
        new = {"device_id": "dev_" + "1" * 24, "provider_id": "prv_" + "1" * 24,
               "programme_id": "vpr_" + "1" * 24}
        pid = requests.post(base + VPP, json=new, headers=auth, timeout=10).json()["id"]
        one = f"{VPP}/{pid}"
        move = {"participation_state": [{"state": "AWAITING_CUSTOMER_CONSENT",
                                         "status": "IN_PROGRESS"}]}
        kinds: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/login", {"auth": basic}),
            ("GET", "/login", {"auth": (account.account_id, "sk_test_wrong")}),
            ("GET", "/login", {"auth": basic, "params": {"x": "1"}}),
            ("POST", VPP, {"headers": auth, "json": {**new, "device_id": "dev_" + "2" * 24}}),
            ("POST", VPP, {"headers": auth, "json": new}),  # 409 participation_exists
            ("POST", VPP, {"headers": auth, "json": {"device_id": "x"}}),
            ("GET", VPP, {"headers": auth}),
            ("GET", VPP, {"headers": auth, "params": {"limit": 0}}),
            ("GET", one, {"headers": auth}),
            ("GET", f"{VPP}/vpp_{'0' * 24}", {"headers": auth}),
            ("GET", f"{VPP}/nope", {"headers": auth}),
            ("POST", one, {"headers": auth, "json": move}),
            ("POST", f"{VPP}/vpp_{'0' * 24}", {"headers": auth, "json": move}),
            ("POST", one, {"headers": auth, "json": {"participation_state": [
                {"state": "ACTIVE", "status": "IN_PROGRESS"}]}}),  # 409
            ("POST", one, {"headers": auth, "json": {"participation_state": []}}),
        ]
        for method, path in (("GET", "/login"), ("POST", VPP), ("GET", VPP), ("GET", one),
                             ("POST", one)):
            base_kw: dict[str, Any] = {"auth": basic} if path == "/login" else {"headers": auth}
            hdr = dict(base_kw.get("headers", {}))
            kinds += [
                (method, path, {**base_kw}),  # no body where one is needed, or a plain call
                (method, path, {**base_kw, "headers": {**hdr, "Content-Type": "text/plain"},
                                "data": b"x"}),
                (method, path, {**base_kw, "headers": {**hdr, "Content-Encoding": "gzip",
                                                       "Content-Type": "application/json"},
                                "data": b"{}"}),
                (method, path, {**base_kw, "headers": {**hdr, "Content-Type": "application/json"},
                                "data": b'{"x":"' + b"a" * 2_000_000 + b'"}'}),
                (method, path, {**base_kw, "headers": {**hdr, "X-Big": "a" * 70_000}}),
                (method, path, {**base_kw, "headers": {**hdr,
                                                       "X-Sandbox-Fault": "rate_limited"}}),
                (method, path, {**base_kw, "headers": {**hdr,
                                                       "X-Sandbox-Fault": "internal_error"}}),
            ]
            if path != "/login":
                kinds.append((method, path, {"headers": {"Authorization": "Bearer not.a.jwt"}}))
        yield [(m, p, requests.request(m, base + p, timeout=30, **kw)) for m, p, kw in kinds]


def _openapi_core(api: OpenAPI, method: str, path: str, answer: requests.Response) -> str | None:
    request = MockRequest("http://127.0.0.1:8080", method.lower(), path)
    response = MockResponse(answer.content, status_code=answer.status_code,
                            headers=dict(answer.headers),
                            content_type=answer.headers.get("content-type", ""))
    try:
        api.validate_response(request, response)
    except Exception as exc:  # openapi-core's errors have no common base worth naming
        return f"{type(exc).__name__}: {exc} {getattr(exc, '__cause__', '')}"
    return None


def _schemathesis(
    schema: Any, operation: str, path: str, answer: requests.Response
) -> str | None:
    ids = {"participation_id": path.rsplit("/", 1)[1]} if path.count("/") == 2 else {}
    case = schema.find_operation_by_label(LABELS[operation]).Case(path_parameters=ids)
    try:
        case.validate_response(answer, checks=[
            status_code_conformance, content_type_conformance, response_headers_conformance,
            response_schema_conformance])
    except BaseException as exc:  # FailureGroup is a BaseExceptionGroup (trap T14)
        return str(exc)
    return None


@pytest.mark.slow
def test_three_readers_of_the_spec_accept_every_answer(
    answers: list[tuple[str, str, requests.Response]],
) -> None:
    api = OpenAPI.from_dict(openapi.load())
    schema = schemathesis.openapi.from_dict(openapi.load())
    seen: dict[str, set[int]] = {}
    problems = []
    for method, path, answer in answers:
        operation = operation_of(method, path)
        seen.setdefault(operation, set()).add(answer.status_code)
        data = answer.json() if answer.content else None
        for reader, problem in (
            ("suite", schemas.response_problem(operation, answer.status_code, data,
                                               dict(answer.headers))),
            ("openapi-core", _openapi_core(api, method, path, answer)),
            ("schemathesis", _schemathesis(schema, operation, path, answer)),
        ):
            if problem is not None:
                problems.append(f"{reader}: {method} {path[:40]} {answer.status_code}: "
                                f"{problem[:300]}")
    assert not problems, "\n".join(problems)
    common = {400, 401, 413, 415, 429, 431, 500}
    assert seen["createBearerToken"] >= {200} | common
    assert seen["createVppParticipation"] >= {201, 409} | common
    assert seen["listVppParticipations"] >= {200} | common
    assert seen["retrieveVppParticipation"] >= {200, 404} | common
    assert seen["updateVppParticipation"] >= {200, 404, 409} | common
    assert all("x-request-id" in {k.lower() for k in a.headers} for _, _, a in answers)


@contextmanager
def _in_process() -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """The in-process sandbox, a token's header and a new participation's id."""
    account = DEFAULT_ACCOUNT[0]
    with TestClient(build(None)) as client:
        token = client.get("/login", auth=(account.account_id, account.api_key)).json()
        auth = {"Authorization": f"Bearer {token['bearer_token']}"}
        pid = client.post(VPP, headers=auth, json={
            "device_id": "dev_" + "1" * 24, "provider_id": "prv_" + "1" * 24,
            "programme_id": "vpr_" + "1" * 24}).json()["id"]
        yield client, auth, str(pid)


def test_a_record_breaking_its_status_schema_is_named_clearly() -> None:
    with _in_process() as (client, auth, pid):

        def message(records: list[dict[str, Any]]) -> str:
            answer = client.post(f"{VPP}/{pid}", headers=auth,
                                 json={"participation_state": records})
            assert answer.status_code == 400
            return str(answer.json()["message"])

        consent = "AWAITING_CUSTOMER_CONSENT"
        assert "state must be one of" in message([{"state": "active", "status": "IN_PROGRESS"}])
        assert "status must be one of" in message([{"state": consent, "status": "in_progress"}])
        assert "unknown field(s) occurred_at" in message([
            {"state": consent, "status": "IN_PROGRESS"},
            {"state": "AWAITING_DEVICE_TELEMETRY", "status": "PENDING",
             "occurred_at": "2026-12-01T00:00:00Z"}])
        clock = client.post("/_sandbox/clock", headers=auth,
                            json={"advance": "P1D", "set": "2030-01-01T00:00:00Z"})
        assert "not both" in clock.json()["message"]


def test_sending_the_timeline_back_is_told_what_to_send() -> None:
    """The update's 409 for a request that repeats the history says to send only what follows
    the current state (the spec's wording of the update)."""
    with _in_process() as (client, auth, pid):
        whole = [{"state": "ENROLMENT_REQUESTED", "status": "COMPLETE"},
                 {"state": "AWAITING_CUSTOMER_CONSENT", "status": "IN_PROGRESS"}]
        answer = client.post(f"{VPP}/{pid}", headers=auth, json={"participation_state": whole})
        assert answer.status_code == 409
        assert "send only the records that follow the current state" in answer.json()["message"]
        illegal = client.post(f"{VPP}/{pid}", headers=auth, json={"participation_state": [
            {"state": "ACTIVE", "status": "IN_PROGRESS"}]})
        assert illegal.status_code == 409 and "send only" not in illegal.json()["message"]

"""The control API's own spec: valid, its examples valid, served apart from the contract."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from tests.sandbox_client import make_sandbox
from tests.spec_tools import operations, resolve_refs
from vpp_sandbox import openapi
from vpp_sandbox.mock_server.auth import ADMIN_KEY_EXTENSION
from vpp_sandbox.mock_server.errors import CATALOGUE, CONTEXTS


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = openapi.load(openapi.CONTROL)
    return loaded






def test_the_control_spec_is_valid_openapi_3_0_3(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.0.3"
    validate_spec(spec)
    assert spec["servers"][0]["url"].endswith("/_sandbox")


def test_every_operation_is_named_authenticated_and_has_an_error_context(
    spec: dict[str, Any],
) -> None:
    assert spec["security"] == [{"bearerAuth": []}]
    for path, method, op in operations(spec):
        assert op["operationId"] in CONTEXTS, f"{method} {path}"
        assert "401" in op["responses"]
        if path.startswith("/accounts"):
            # Accounts on demand: the admin key (or, to delete, the account's own token).
            assert {"adminKey": []} in op["security"], f"{method} {path}"
            assert {"403", "409"} <= set(op["responses"]), f"{method} {path}"
        else:
            assert "security" not in op, f"{method} {path}"
    admin = spec["components"]["securitySchemes"]["adminKey"]
    assert admin["scheme"] == "bearer" and admin[ADMIN_KEY_EXTENSION] is True


def test_error_schema_matches_the_contracts_and_codes_are_catalogued(spec: dict[str, Any]) -> None:
    contract = openapi.load(openapi.CONTRACT)
    ours = spec["components"]["schemas"]["Error"]
    theirs = contract["components"]["schemas"]["Error"]
    assert ours["required"] == theirs["required"]
    assert set(ours["properties"]) == set(theirs["properties"])
    codes = (
        "clock_cannot_go_back",
        "autopilot_unavailable",
        "admin_key_invalid",
        "admin_key_required",
        "account_forbidden",
        "account_not_found",
        "account_not_deletable",
        "account_limit_reached",
        "operation_in_progress",
        "store_unavailable",
    )
    for code in codes:
        assert code in CATALOGUE and code in ours["properties"]["code"]["description"]


def test_every_example_validates(spec: dict[str, Any]) -> None:
    checked = 0
    for _, _, op in operations(spec):
        bodies = [op.get("requestBody", {}).get("content", {})]
        bodies += [resolve_refs(spec, r).get("content", {}) for r in op["responses"].values()]
        for content in bodies:
            for media in content.values():
                schema = resolve_refs(spec, media["schema"])
                examples = [e["value"] for e in media.get("examples", {}).values()]
                examples += [media["example"]] if "example" in media else []
                for example in examples:
                    OAS30Validator(schema).validate(example)
                    checked += 1
    for schema in spec["components"]["schemas"].values():
        if "example" in schema and "properties" in schema:  # whole objects, not one field
            OAS30Validator(resolve_refs(spec, schema)).validate(schema["example"])
            checked += 1
    assert checked >= 14


def test_the_contract_spec_never_mentions_the_sandbox_controls() -> None:
    text = openapi.text(openapi.CONTRACT)
    assert "_sandbox" not in text
    client = make_sandbox().client
    served = client.get("/openapi.json").json()
    assert not [p for p in served["paths"] if "sandbox" in p]
    control = client.get("/_sandbox/openapi.json").json()
    assert set(control["paths"]) == {
        "/clock", "/reset", "/world", "/accounts", "/accounts/{account_id}", "/requests",
        "/faults",
    }
    assert client.get("/_sandbox/ui/").status_code == 200


def test_control_errors_use_the_error_object_and_their_own_contexts() -> None:
    sb = make_sandbox()
    r = sb.client.get("/_sandbox/clock")
    assert r.status_code == 401 and r.json()["context"] == "sandbox.clock_retrieve"
    r = sb.client.delete("/_sandbox/clock", headers=sb.headers())
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST, HEAD"
    r = sb.client.post("/_sandbox/clock", content=b"{", headers={
        **sb.headers(), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["object"] == "error"
    r = sb.client.get("/_sandbox/nothing", headers=sb.headers())
    assert r.status_code == 404 and r.json()["code"] == "route_not_found"

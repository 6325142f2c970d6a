"""Every error status the server can send, each as the Flatpeak error object in application/json."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import jwt
import pytest

from tests.sandbox_client import ACCOUNT_A, Sandbox, make_sandbox, new_id, step
from vpp_sandbox import openapi
from vpp_sandbox.mock_server.app import create_app
from vpp_sandbox.mock_server.autopilot import next_due
from vpp_sandbox.mock_server.documents import encode_checked
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.store_sqlite import SqliteStore

SPEC = openapi.load()
ERROR_SCHEMA = {"$ref": "#/components/schemas/Error", "components": SPEC["components"]}
ERROR_VALIDATOR = jsonschema.Draft4Validator(
    ERROR_SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
)


@pytest.fixture
def sb() -> Sandbox:
    return make_sandbox()


def assert_error(r: Any, status: int, code: str, context: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    ERROR_VALIDATOR.validate(body)
    assert body["code"] == code, body
    assert body["type"] == ("api_error" if status >= 500 else "invalid_request")
    assert body["message"]
    if context is not None:
        assert body["context"] == context
    return body


CREATE = "api.vpp_participation_create"
LIST = "api.vpp_participation_list"
RETRIEVE = "api.vpp_participation_retrieve"
UPDATE = "api.vpp_participation_update"


# -- 400 ---------------------------------------------------------------------------------------


def test_malformed_json_is_400(sb: Sandbox) -> None:
    headers = {**sb.headers(), "Content-Type": "application/json"}
    for raw in (b"{bad", b"[1,", b"NaN", b'{"device_id": Infinity}'):
        r = sb.client.post("/vpp-participations", content=raw, headers=headers)
        assert_error(r, 400, "invalid_request_body", CREATE)


def test_non_utf8_body_is_400(sb: Sandbox) -> None:
    headers = {**sb.headers(), "Content-Type": "application/json"}
    r = sb.client.post("/vpp-participations", content=b'{"a": "\xff\xfe"}', headers=headers)
    body = assert_error(r, 400, "invalid_request_body", CREATE)
    assert "UTF-8" in body["message"]


def test_empty_body_is_400(sb: Sandbox) -> None:
    headers = {**sb.headers(), "Content-Type": "application/json"}
    r = sb.client.post("/vpp-participations", content=b"", headers=headers)
    assert_error(r, 400, "invalid_request_body", CREATE)


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({}, "device_id"),
        (
            {"device_id": "dev_x", "provider_id": new_id("prv"), "programme_id": new_id("vpr")},
            "dev_ and 24 lowercase hex",
        ),
        (
            {
                "device_id": new_id("dev"),
                "provider_id": new_id("prv"),
                "programme_id": new_id("vpr"),
                "colour": "red",
            },
            "colour",
        ),
        ([], "object"),
    ],
)
def test_schema_violations_on_create_are_400(sb: Sandbox, body: Any, hint: str) -> None:
    r = sb.client.post("/vpp-participations", json=body, headers=sb.headers())
    err = assert_error(r, 400, "invalid_request_body", CREATE)
    assert hint in err["message"]


def test_update_timeline_errors_are_400(sb: Sandbox) -> None:
    pid = sb.create().json()["id"]
    r = sb.update(pid, step("AWAITING_CUSTOMER_CONSENT", "COMPLETE"))
    assert_error(r, 400, "participation_state_invalid", UPDATE)
    r = sb.update(pid, step("AWAITING_CUSTOMER_CONSENT", occurred_at="2999-01-01T00:00:00Z"))
    assert "future" in assert_error(r, 400, "participation_state_invalid", UPDATE)["message"]
    r = sb.update(pid, step("AWAITING_CUSTOMER_CONSENT", occurred_at="9999-12-31T23:59:59-23:00"))
    assert_error(r, 400, "participation_state_invalid", UPDATE)
    r = sb.client.post(
        f"/vpp-participations/{pid}", json={"participation_state": []}, headers=sb.headers()
    )
    assert_error(r, 400, "invalid_request_body", UPDATE)
    r = sb.update(pid, step("AWAITING_CUSTOMER_CONSENT", occurred_at="yesterday"))
    assert_error(r, 400, "invalid_request_body", UPDATE)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=ten",
        "limit=1&limit=2",
        "starting_after=vpp_nope",
        "device_id=dev_short",
        "colour=red",
    ],
)
def test_bad_query_parameters_are_400(sb: Sandbox, query: str) -> None:
    r = sb.client.get(f"/vpp-participations?{query}", headers=sb.headers())
    assert_error(r, 400, "invalid_parameter", LIST)


def test_both_cursors_and_unknown_cursor_are_400(sb: Sandbox) -> None:
    pid = sb.create().json()["id"]
    r = sb.list(starting_after=pid, ending_before=pid)
    assert "not both" in assert_error(r, 400, "invalid_parameter", LIST)["message"]
    r = sb.list(ending_before=new_id("vpp"))
    assert_error(r, 400, "invalid_parameter", LIST)


def test_malformed_path_id_is_400(sb: Sandbox) -> None:
    r = sb.client.get("/vpp-participations/vpp_NOT_HEX", headers=sb.headers())
    assert_error(r, 400, "invalid_parameter", RETRIEVE)


def test_bad_content_length_is_400(sb: Sandbox) -> None:
    headers = {**sb.headers(), "Content-Type": "application/json", "Content-Length": "abc"}
    r = sb.client.post("/vpp-participations", content=b"{}", headers=headers)
    assert_error(r, 400, "invalid_request_body", CREATE)


# -- 401 ---------------------------------------------------------------------------------------


def test_missing_token_is_401_on_every_operation(sb: Sandbox) -> None:
    pid = new_id("vpp")
    calls: list[tuple[Callable[..., Any], str, str, dict[str, Any]]] = [
        (sb.client.get, "/vpp-participations", LIST, {}),
        (sb.client.post, "/vpp-participations", CREATE, {"json": {}}),
        (sb.client.get, f"/vpp-participations/{pid}", RETRIEVE, {}),
        (sb.client.post, f"/vpp-participations/{pid}", UPDATE, {"json": {}}),
    ]
    for call, path, context, kw in calls:
        assert_error(call(path, **kw), 401, "authentication_required", context)


def _token(secret: str | bytes, **claims: Any) -> str:
    now = int(time.time())
    base = {
        "account_id": ACCOUNT_A,
        "live_mode": False,
        "iss": "FlatPeakAPI",
        "sub": ACCOUNT_A,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


def test_expired_forged_and_malformed_tokens_are_401(sb: Sandbox) -> None:
    secret = sb.secret
    cases = [
        (_token(secret, iat=1, nbf=1, exp=3601), "token_expired"),
        (_token("someone-elses-signing-secret-of-32-bytes"), "token_invalid"),
        (_token(secret, iss="Elsewhere"), "token_invalid"),
        (_token(secret, account_id="acc_" + "0" * 24), "token_invalid"),
        ("not.a.jwt", "token_invalid"),
        ("", "token_invalid"),
    ]
    for token, code in cases:
        r = sb.client.get("/vpp-participations", headers={"Authorization": f"Bearer {token}"})
        assert_error(r, 401, code, LIST)
    r = sb.client.get("/vpp-participations", headers={"Authorization": "Basic abc"})
    assert_error(r, 401, "token_invalid", LIST)
    r = sb.client.get("/vpp-participations", headers={"Authorization": "Bearer"})
    assert r.status_code == 401


def test_bad_basic_credentials_are_401(sb: Sandbox) -> None:
    assert_error(sb.client.get("/login"), 401, "authentication_required", "api.login")
    r = sb.client.get("/login", auth=(ACCOUNT_A, "sk_test_wrong"))
    assert_error(r, 401, "credentials_invalid", "api.login")
    r = sb.client.get("/login", headers={"Authorization": "Basic !!!"})
    assert_error(r, 401, "credentials_invalid", "api.login")
    nocolon = base64.b64encode(b"no-colon").decode()
    r = sb.client.get("/login", headers={"Authorization": f"Basic {nocolon}"})
    assert_error(r, 401, "credentials_invalid", "api.login")
    r = sb.client.get("/login", headers=sb.headers())
    assert_error(r, 401, "credentials_invalid", "api.login")


# -- 404, 405, 409, 413, 415 -------------------------------------------------------------------


def test_unknown_participation_and_unknown_route_are_404(sb: Sandbox) -> None:
    r = sb.get(new_id("vpp"))
    assert_error(r, 404, "participation_not_found", RETRIEVE)
    r = sb.update(new_id("vpp"), step("ACTIVE"))
    assert_error(r, 404, "participation_not_found", UPDATE)
    for path in ("/nope", "/vpp-participations/x/y", "/v1/vpp-participations"):
        assert_error(sb.client.get(path), 404, "route_not_found", "api")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/vpp-participations"),
        ("PUT", "/vpp-participations/vpp_" + "0" * 24),
        ("PATCH", "/vpp-participations/vpp_" + "0" * 24),
        ("POST", "/login"),
        ("OPTIONS", "/vpp-participations"),
    ],
)
def test_wrong_method_is_405_with_the_allowed_methods(sb: Sandbox, method: str, path: str) -> None:
    r = sb.client.request(method, path, headers=sb.headers())
    assert_error(r, 405, "method_not_allowed")
    expected = "GET, HEAD" if path == "/login" else "GET, POST, HEAD"
    assert r.headers["allow"] == expected


def test_duplicate_create_is_409_naming_the_existing_participation(sb: Sandbox) -> None:
    body: dict[str, Any] = {"device_id": new_id("dev"), "programme_id": new_id("vpr")}
    first = sb.create(**body).json()
    err = assert_error(sb.create(**body), 409, "participation_exists", CREATE)
    assert first["id"] in err["message"]


def test_oversized_body_is_413() -> None:
    sb = make_sandbox(max_body_bytes=1024)
    headers = {**sb.headers(), "Content-Type": "application/json"}
    r = sb.client.post("/vpp-participations", content=b" " * 2048, headers=headers)
    assert_error(r, 413, "request_too_large", CREATE)

    def chunks() -> Any:  # no Content-Length: counted while reading
        for _ in range(4):
            yield b" " * 512

    r = sb.client.post("/vpp-participations", content=chunks(), headers=headers)
    assert_error(r, 413, "request_too_large", CREATE)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_wrong_media_type_is_415(sb: Sandbox, content_type: str) -> None:
    headers = {**sb.headers(), "Content-Type": content_type}
    r = sb.client.post("/vpp-participations", content=b"device_id=x", headers=headers)
    assert_error(r, 415, "unsupported_media_type", CREATE)


# -- 500 and the error object's mode ---------------------------------------------------------


class BrokenStore(SqliteStore):
    async def get_json(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")


def test_unexpected_exception_is_a_500_error_object() -> None:
    settings = Settings(db=":memory:")
    store = BrokenStore(":memory:", next_due=next_due, encode=encode_checked)
    client = create_app(settings, store).test_client()
    account = settings.accounts[0]
    token = client.get("/login", auth=(account.account_id, account.api_key)).json()
    headers = {"Authorization": f"Bearer {token['bearer_token']}"}
    r = client.get(f"/vpp-participations/{new_id('vpp')}", headers=headers)
    body = assert_error(r, 500, "internal_error", RETRIEVE)
    assert "disk on fire" not in body["message"]


def test_error_live_mode_follows_the_token(sb: Sandbox) -> None:
    r = sb.get(new_id("vpp"), live=True)
    assert assert_error(r, 404, "participation_not_found")["live_mode"] is True
    assert "live mode" in r.json()["message"]
    r = sb.get(new_id("vpp"))
    assert r.json()["live_mode"] is False

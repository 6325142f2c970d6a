"""Malformed and hostile input, in-process: always a 4xx in the error format, never stored.

Strings no text can hold (lone surrogates, NUL), ids with a trailing newline in bodies, paths
and queries of both APIs, content codings and charsets, chunked and empty bodies, deep and
wide JSON, trailing slashes; and the neighbours that must still work (other control
characters round-trip, UTF-8 in any spelling of the charset).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.sandbox_client import ACCOUNT_A, Sandbox, create_body, make_sandbox, new_id, step
from tests.stores import every, sync
from tests.test_http_errors import assert_error
from vpp_sandbox import openapi
from vpp_sandbox.mock_server.errors import CONTEXTS
from vpp_sandbox.mock_server.validation import ecma_pattern, unstorable

CREATE = "api.vpp_participation_create"
UPDATE = "api.vpp_participation_update"
LIST = "api.vpp_participation_list"
RETRIEVE = "api.vpp_participation_retrieve"
CLOCK = "sandbox.clock_update"
WORLD = "sandbox.world_load"


@pytest.fixture
def sb() -> Sandbox:
    return make_sandbox()


def post(sb: Sandbox, path: str, raw: bytes, **headers: str) -> Any:
    all_headers = {**sb.headers(), "Content-Type": "application/json", **headers}
    return sb.client.post(path, content=raw, headers=all_headers)


def created(sb: Sandbox) -> str:
    r = sb.create()
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def snapshot(sb: Sandbox) -> list[Any]:
    """Everything stored: every participation of every namespace, as the store holds it."""
    return [p.to_json() for p in every(sb.store)]


# -- strings that no text can hold ---------------------------------------------------------------

SURROGATE = "\\ud800"  # as written in JSON: a lone high surrogate
LOW_SURROGATE = "\\udfff"
NUL = "\\u0000"


def create_raw(field: str, escaped: str) -> bytes:
    """A create body whose `field` (its valid value, or a reference) ends in `escaped`."""
    body = create_body()
    value = str(body.get(field, "AZ01346701301")) + escaped
    body[field] = f"@@{field}@@"
    return json.dumps(body).replace(f'"@@{field}@@"', f'"{value}"').encode()


@pytest.mark.parametrize("escaped", [SURROGATE, LOW_SURROGATE, NUL, "a" + SURROGATE + "b"])
@pytest.mark.parametrize("field", ["device_id", "provider_id", "programme_id", "reference_id"])
def test_create_with_a_string_no_text_can_hold_is_400(
    sb: Sandbox, field: str, escaped: str
) -> None:
    r = post(sb, "/vpp-participations", create_raw(field, escaped))
    body = assert_error(r, 400, "invalid_request_body", CREATE)
    assert f"body.{field}" in body["message"] or "must be" in body["message"]
    assert sync(sb.store.count()) == 0


@pytest.mark.parametrize("escaped", [SURROGATE, NUL])
def test_a_field_name_no_text_can_hold_is_400(sb: Sandbox, escaped: str) -> None:
    raw = json.dumps(create_body()).encode()[:-1] + f', "x{escaped}": 1}}'.encode()
    assert_error(post(sb, "/vpp-participations", raw), 400, "invalid_request_body", CREATE)
    assert sync(sb.store.count()) == 0


@pytest.mark.parametrize("escaped", [SURROGATE, NUL, "\\udbff\\u0041"])
@pytest.mark.parametrize("field", ["description", "occurred_at", "state"])
def test_update_with_a_string_no_text_can_hold_is_400(
    sb: Sandbox, field: str, escaped: str
) -> None:
    pid = created(sb)
    before = snapshot(sb)
    record = {"state": "AWAITING_CUSTOMER_CONSENT", "status": "IN_PROGRESS", field: "@@"}
    if field != "description":
        record[field] = "@@"
    raw = json.dumps({"participation_state": [record]}).replace('"@@"', f'"x{escaped}"')
    r = post(sb, f"/vpp-participations/{pid}", raw.encode())
    assert_error(r, 400, "invalid_request_body", UPDATE)
    assert snapshot(sb) == before


@pytest.mark.parametrize(
    ("path", "raw", "context"),
    [
        ("/_sandbox/clock", '{"advance": "P1D' + SURROGATE + '"}', CLOCK),
        ("/_sandbox/clock", '{"set": "2030-01-01T00:00:00Z' + NUL + '"}', CLOCK),
        ("/_sandbox/world", '{"world": "demo' + SURROGATE + '"}', WORLD),
    ],
)
def test_the_control_api_refuses_them_too(sb: Sandbox, path: str, raw: str, context: str) -> None:
    clock = sb.client.get("/_sandbox/clock", headers=sb.headers()).json()
    assert_error(post(sb, path, raw.encode()), 400, "invalid_request_body", context)
    assert (
        sb.client.get("/_sandbox/clock", headers=sb.headers()).json()["frozen"] == clock["frozen"]
    )
    assert sync(sb.store.count()) == 0


def test_a_surrogate_pair_is_text_and_round_trips(sb: Sandbox) -> None:
    """The neighbour that must pass: an escaped pair (😀) and other control characters."""
    raw = create_raw("reference_id", "\\ud83d\\ude00\\t\\u2028\\u007f\\u0001")
    r = post(sb, "/vpp-participations", raw)
    assert r.status_code == 201, r.text
    assert r.json()["reference_id"].endswith("\U0001f600\t\u2028\x7f\x01")
    assert sb.get(r.json()["id"]).json() == r.json()


def test_unstorable_names_the_place() -> None:
    assert unstorable({"a": [1, {"b": "x\ud800"}]}) == (
        "body.a[1].b contains an unpaired surrogate (\\ud800), which is not Unicode text; "
        "send the character itself in UTF-8, or as a pair of \\u escapes."
    )
    assert unstorable({"a": "fine \U0001f600", "b": [None, 1.5]}) is None


# -- whole-string ids: a trailing newline never passes -------------------------------------------


def test_ecma_dollar_is_the_end_of_the_string() -> None:
    import re

    assert re.search(r"^a$", "a\n")  # Python's $: the trap
    assert not re.search(ecma_pattern(r"^a$"), "a\n")
    assert ecma_pattern(r"^[$]\$x$") == r"^[$]\$x\Z"


@pytest.mark.parametrize("field", ["device_id", "provider_id", "programme_id"])
@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t"])
def test_create_ids_match_whole_strings(sb: Sandbox, field: str, suffix: str) -> None:
    body = create_body()
    body[field] += suffix
    r = sb.client.post("/vpp-participations", json=body, headers=sb.headers())
    error = assert_error(r, 400, "invalid_request_body", CREATE)
    assert field in error["message"]
    assert sync(sb.store.count()) == 0


def test_a_newline_id_cannot_open_a_second_participation(sb: Sandbox) -> None:
    """Issue 10: 'dev_…\\n' was stored beside 'dev_…', two open participations for one device."""
    body = create_body()
    assert sb.client.post("/vpp-participations", json=body, headers=sb.headers()).status_code == 201
    twin = {**body, "device_id": body["device_id"] + "\n"}
    r = sb.client.post("/vpp-participations", json=twin, headers=sb.headers())
    assert_error(r, 400, "invalid_request_body", CREATE)
    assert sync(sb.store.count()) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_path_ids_match_whole_strings(sb: Sandbox, method: str) -> None:
    pid = created(sb)
    before = snapshot(sb)
    for suffix in ("%0A", "%0D%0A", "%00", "%20"):
        kwargs: dict[str, Any] = {"headers": sb.headers()}
        if method == "POST":
            kwargs["json"] = {"participation_state": [step("AWAITING_CUSTOMER_CONSENT")]}
        r = sb.client.request(method, f"/vpp-participations/{pid}{suffix}", **kwargs)
        error = assert_error(r, 400, "invalid_parameter")
        assert "vpp_ and 24 lowercase hex" in error["message"]
    assert snapshot(sb) == before


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_path_with_a_control_character_without_a_token_is_401_first(
    sb: Sandbox, method: str
) -> None:
    """Rule 14: without a valid token every VPP operation is a 401, a malformed id or not."""
    for headers, code in (({}, "authentication_required"),
                          ({"Authorization": "Bearer nope"}, "token_invalid")):
        r = sb.client.request(method, f"/vpp-participations/vpp_%0A{'a' * 20}", headers=headers)
        assert_error(r, 401, code)


@pytest.mark.parametrize("name", ["device_id", "starting_after", "ending_before"])
def test_query_ids_match_whole_strings(sb: Sandbox, name: str) -> None:
    pid = created(sb)
    value = {"device_id": new_id("dev"), "starting_after": pid, "ending_before": pid}[name]
    r = sb.client.get("/vpp-participations", params={name: value + "\n"}, headers=sb.headers())
    error = assert_error(r, 400, "invalid_parameter", LIST)
    assert name in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"set": "2030-01-01T00:00:00Z\n"},
        {"advance": "P7D\n"},
        {"world": "demo\n"},
    ],
)
def test_control_values_match_whole_strings(sb: Sandbox, body: dict[str, Any]) -> None:
    path = "/_sandbox/world" if "world" in body else "/_sandbox/clock"
    before = sb.client.get("/_sandbox/clock", headers=sb.headers()).json()["now"]
    r = sb.client.post(path, json=body, headers=sb.headers())
    assert_error(r, 400, "invalid_request_body", WORLD if "world" in body else CLOCK)
    after = sb.client.get("/_sandbox/clock", headers=sb.headers()).json()["now"]
    assert after[:16] == before[:16]  # not moved to 2030
    assert sync(sb.store.count()) == 0


def test_update_times_match_whole_strings(sb: Sandbox) -> None:
    pid = created(sb)
    before = snapshot(sb)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = sb.update(pid, step("AWAITING_CUSTOMER_CONSENT", occurred_at=now + "\n"))
    error = assert_error(r, 400, "invalid_request_body", UPDATE)
    assert "occurred_at" in error["message"]
    assert snapshot(sb) == before


# -- codings, charsets, framing --------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "compress", "gzip, identity", "x-zip"])
def test_a_content_coding_is_415_naming_it(sb: Sandbox, coding: str) -> None:
    raw = json.dumps(create_body()).encode()
    r = post(sb, "/vpp-participations", raw, **{"Content-Encoding": coding})
    error = assert_error(r, 415, "unsupported_media_type", CREATE)
    assert coding in error["message"] and "uncompressed" in error["message"]
    assert sync(sb.store.count()) == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=latin-1",
        "application/json;charset=iso-8859-1",
        "application/json; charset=utf-16",
        'application/json; CHARSET="windows-1252"',
    ],
)
def test_a_charset_other_than_utf8_is_415_naming_it(sb: Sandbox, content_type: str) -> None:
    raw = json.dumps(create_body()).encode()
    r = post(sb, "/vpp-participations", raw, **{"Content-Type": content_type})
    error = assert_error(r, 415, "unsupported_media_type", CREATE)
    charset = content_type.rsplit("=", 1)[1].strip('"')
    assert f"charset={charset}" in error["message"]
    assert sync(sb.store.count()) == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json; charset=us-ascii",
    ],
)
def test_utf8_in_any_spelling_and_identity_are_read(sb: Sandbox, content_type: str) -> None:
    raw = json.dumps(create_body()).encode()
    r = post(sb, "/vpp-participations", raw, **{"Content-Type": content_type})
    assert r.status_code == 201, r.text
    r = post(
        sb,
        "/vpp-participations",
        json.dumps(create_body()).encode(),
        **{"Content-Encoding": "identity"},
    )
    assert r.status_code == 201, r.text


def test_a_chunked_body_is_read(sb: Sandbox) -> None:
    body = create_body()
    raw = json.dumps(body).encode()

    def chunks() -> Any:  # no Content-Length: Transfer-Encoding: chunked
        yield raw[:7]
        yield raw[7:]

    r = sb.client.post(
        "/vpp-participations",
        content=chunks(),
        headers={**sb.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["device_id"] == body["device_id"]
    pid = r.json()["id"]
    update = json.dumps({"participation_state": [step("AWAITING_CUSTOMER_CONSENT")]}).encode()

    def update_chunks() -> Any:
        yield update

    r = sb.client.post(
        f"/vpp-participations/{pid}",
        content=update_chunks(),
        headers={**sb.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("raw", [b"", b"   ", b"\r\n\t "])
@pytest.mark.parametrize(
    ("path", "context", "fields"),
    [
        ("/vpp-participations", CREATE, "device_id, provider_id, programme_id"),
        ("/_sandbox/clock", CLOCK, None),
        ("/_sandbox/world", WORLD, "world"),
    ],
)
def test_an_empty_body_gets_our_own_400(
    sb: Sandbox, raw: bytes, path: str, context: str, fields: str | None
) -> None:
    r = post(sb, path, raw)
    error = assert_error(r, 400, "invalid_request_body", context)
    assert "RequestBody is required" not in error["message"]
    assert error["message"].startswith("The request body is empty; send a JSON object")
    if fields:
        assert fields in error["message"]
    assert sync(sb.store.count()) == 0


def test_an_empty_update_body_names_participation_state(sb: Sandbox) -> None:
    pid = created(sb)
    error = assert_error(post(sb, f"/vpp-participations/{pid}", b""), 400, "invalid_request_body")
    assert "participation_state" in error["message"]


# -- shapes: deep, wide, odd JSON ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 30_000 + b"]" * 30_000,  # deeper than any parser's recursion, under 64 KiB
        b'{"device_id": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        b'{"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {}}}}}}}}}',
        b"\xef\xbb\xbf" + json.dumps(create_body()).encode(),  # a byte order mark
        b'{"device_id": 1e400, "provider_id": 1, "programme_id": -0}',
        b"[" + b"1," * 20_000 + b"1]",
        b'"just a string"',
        b"null",
        b"123456789012345678901234567890",
    ],
)
def test_odd_json_is_400_and_stores_nothing(sb: Sandbox, raw: bytes) -> None:
    assert_error(post(sb, "/vpp-participations", raw), 400, "invalid_request_body", CREATE)
    assert sync(sb.store.count()) == 0


def test_thousands_of_unknown_fields_get_a_short_message(sb: Sandbox) -> None:
    body = {**create_body(), **{f"f{i}": i for i in range(5000)}}
    r = sb.client.post("/vpp-participations", json=body, headers=sb.headers())
    error = assert_error(r, 400, "invalid_request_body", CREATE)
    assert len(error["message"]) < 600
    assert "device_id" in error["message"]  # it still says what the fields are
    assert sync(sb.store.count()) == 0


def test_a_body_over_the_limit_is_413_chunked_or_not(sb: Sandbox) -> None:
    raw = b'{"reference_id": "' + b"x" * 70_000 + b'"}'
    assert_error(post(sb, "/vpp-participations", raw), 413, "request_too_large", CREATE)

    def chunks() -> Any:
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    r = sb.client.post(
        "/vpp-participations",
        content=chunks(),
        headers={**sb.headers(), "Content-Type": "application/json"},
    )
    assert_error(r, 413, "request_too_large", CREATE)
    assert sync(sb.store.count()) == 0


def test_too_many_header_fields_is_431(sb: Sandbox) -> None:
    headers = {**sb.headers(), **{f"X-Flood-{i}": "1" for i in range(120)}}
    r = sb.client.get("/vpp-participations", headers=headers)
    assert_error(r, 431, "request_header_too_large", LIST)
    r = sb.client.get("/vpp-participations", headers={**sb.headers(), "X-Big": "b" * 40_000})
    assert_error(r, 431, "request_header_too_large", LIST)


def test_content_length_and_transfer_encoding_together_is_400(sb: Sandbox) -> None:
    raw = json.dumps(create_body()).encode()
    r = post(sb, "/vpp-participations", raw, **{"Transfer-Encoding": "chunked"})
    assert_error(r, 400, "request_malformed", CREATE)
    assert sync(sb.store.count()) == 0


# -- paths -----------------------------------------------------------------------------------------


def test_a_trailing_slash_is_the_path_without_it(sb: Sandbox) -> None:
    pid = created(sb)
    r = sb.client.get("/vpp-participations/", headers=sb.headers(), follow_redirects=False)
    assert r.status_code == 200 and r.json()["data"][0]["id"] == pid
    r = sb.client.get(f"/vpp-participations/{pid}/", headers=sb.headers(), follow_redirects=False)
    assert r.status_code == 200 and r.json()["id"] == pid
    r = sb.client.post(
        f"/vpp-participations/{pid}/",
        json={"participation_state": [step("AWAITING_CUSTOMER_CONSENT")]},
        headers=sb.headers(),
        follow_redirects=False,
    )
    assert r.status_code == 200 and r.json()["current_state"] == "AWAITING_CUSTOMER_CONSENT"
    r = sb.client.post(
        "/vpp-participations/", json=create_body(), headers=sb.headers(), follow_redirects=False
    )
    assert r.status_code == 201
    r = sb.client.get("/_sandbox/clock/", headers=sb.headers(), follow_redirects=False)
    assert r.status_code == 200 and r.json()["object"] == "sandbox_clock"
    r = sb.client.get("/login/", auth=(ACCOUNT_A, sb.key()), follow_redirects=False)
    assert r.status_code == 200
    # Not an API path: still a 404 in the error format, never an empty redirect.
    r = sb.client.get("/nope/", follow_redirects=False)
    assert_error(r, 404, "route_not_found")
    r = sb.client.get("/vpp-participations//", headers=sb.headers(), follow_redirects=False)
    assert r.status_code == 200 and r.json()["object"] == "list"


# -- the error body's clock, the served spec, the messages -----------------------------------------


def test_error_time_created_is_the_namespace_clock(sb: Sandbox) -> None:
    r = sb.client.post("/_sandbox/clock", json={"advance": "P30D"}, headers=sb.headers())
    assert r.status_code == 200
    virtual = datetime.fromisoformat(r.json()["now"].replace("Z", "+00:00"))
    r = sb.get(new_id("vpp"))
    error = assert_error(r, 404, "participation_not_found", RETRIEVE)
    at = datetime.fromisoformat(error["time_created"].replace("Z", "+00:00"))
    assert abs(at - virtual) < timedelta(seconds=5)
    # Without a valid token: real time, test mode.
    r = sb.client.get("/vpp-participations/" + new_id("vpp"))
    error = assert_error(r, 401, "authentication_required", RETRIEVE)
    at = datetime.fromisoformat(error["time_created"].replace("Z", "+00:00"))
    assert abs(at - datetime.now(UTC)) < timedelta(seconds=5)
    # And for the intake's own errors (a 415 answered before Connexion).
    r = post(sb, "/vpp-participations", b"{}", **{"Content-Encoding": "gzip"})
    error = assert_error(r, 415, "unsupported_media_type", CREATE)
    at = datetime.fromisoformat(error["time_created"].replace("Z", "+00:00"))
    assert abs(at - virtual) < timedelta(seconds=5)


def test_swagger_ui_gets_a_usable_server(sb: Sandbox) -> None:
    for path, base in (("/openapi.json", ""), ("/_sandbox/openapi.json", "/_sandbox")):
        servers = sb.client.get(path).json()["servers"]
        assert servers == [{"url": f"http://testserver{base}", "description": "This VPP Sandbox"}]


def test_each_operations_400_example_is_its_own_error() -> None:
    spec = openapi.load()
    responses = spec["components"]["responses"]
    for item in spec["paths"].values():
        for op in item.values():
            if not isinstance(op, dict) or "400" not in op.get("responses", {}):
                continue
            ref = op["responses"]["400"]["$ref"].rsplit("/", 1)[1]
            example = responses[ref]["content"]["application/json"]["example"]
            assert example["context"] == CONTEXTS[op["operationId"]], op["operationId"]


ADVANCE_HINT = "a string like P7D of at most 32 characters or an integer from 0 to 3153600000"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"advance": "7 days"}, ADVANCE_HINT),
        ({"advance": -5}, ADVANCE_HINT),
        ({}, "at least 1 of the fields advance, autopilot, freeze, set"),
        ({"freeze": "yes"}, "body.freeze must be of type boolean"),
        ({"set": "tomorrow"}, "RFC 3339 time such as"),
    ],
)
def test_control_errors_say_how_to_fix_the_request(
    sb: Sandbox, body: dict[str, Any], says: str
) -> None:
    r = sb.client.post("/_sandbox/clock", json=body, headers=sb.headers())
    error = assert_error(r, 400, "invalid_request_body", CLOCK)
    assert says in error["message"], error["message"]
    assert "is not valid under any of the given schemas" not in error["message"]


def test_world_size_errors_say_the_bound(sb: Sandbox) -> None:
    r = sb.client.post(
        "/_sandbox/world", json={"world": "load", "size": 10**6}, headers=sb.headers()
    )
    error = assert_error(r, 400, "invalid_request_body", WORLD)
    assert error["message"] == "body.size must be at most 100000."


# -- an honest 500 -------------------------------------------------------------------------------


def test_a_500_after_a_create_was_committed_says_it_may_have_been_applied(sb: Sandbox) -> None:
    """An error after the write: the message must not promise nothing changed."""
    real_insert = sb.store.insert

    async def insert_then_break(participation: Any, **options: Any) -> str:
        await real_insert(participation, **options)  # committed
        raise RuntimeError("the connection dropped after the commit")

    sb.store.insert = insert_then_break  # type: ignore[method-assign]
    body = create_body()
    r = sb.client.post("/vpp-participations", json=body, headers=sb.headers())
    error = assert_error(r, 500, "internal_error", CREATE)
    assert "nothing was changed" not in error["message"]
    assert "may have been created" in error["message"] and "device_id" in error["message"]
    assert sync(sb.store.count()) == 1  # it was
    sb.store.insert = real_insert  # type: ignore[method-assign]
    retry = sb.client.post("/vpp-participations", json=body, headers=sb.headers())
    assert_error(retry, 409, "participation_exists", CREATE)  # as the message says


def test_a_500_after_an_update_was_committed_says_how_to_check(sb: Sandbox) -> None:
    pid = created(sb)
    real_update = sb.store.update

    async def update_then_break(*args: Any, **kwargs: Any) -> str:
        await real_update(*args, **kwargs)  # committed
        raise RuntimeError("the connection dropped after the commit")

    sb.store.update = update_then_break  # type: ignore[method-assign]
    r = sb.update(pid, step("AWAITING_CUSTOMER_CONSENT"))
    error = assert_error(r, 500, "internal_error", UPDATE)
    assert "nothing was changed" not in error["message"]
    assert "may have been applied" in error["message"] and "retrieve" in error["message"]
    sb.store.update = real_update  # type: ignore[method-assign]
    assert sb.get(pid).json()["current_state"] == "AWAITING_CUSTOMER_CONSENT"


def test_a_500_on_a_read_still_says_nothing_changed(sb: Sandbox) -> None:
    pid = created(sb)
    real_read = sb.store.namespace_state  # a retrieve's one read: the clock and the row

    async def read_then_break(*args: Any, **kwargs: Any) -> Any:
        read = await real_read(*args, **kwargs)
        if len(args) > 1 and args[1] == pid:  # the retrieve's read, not the login's
            raise RuntimeError("the connection dropped")
        return read

    sb.store.namespace_state = read_then_break  # type: ignore[method-assign]
    error = assert_error(sb.get(pid), 500, "internal_error", RETRIEVE)
    assert error["message"].endswith("nothing was changed.")

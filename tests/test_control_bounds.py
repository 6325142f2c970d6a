"""Values the control API's schema allows but the sandbox cannot represent: a `400` naming the
bound, nothing changed, and the namespace still answers afterwards (it was a `500` for every
later request of the namespace until a reset)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.sandbox_client import Sandbox, make_sandbox
from tests.test_http_errors import assert_error

CLOCK = "sandbox.clock_update"


@pytest.fixture
def sb() -> Sandbox:
    return make_sandbox()


def _clock(sb: Sandbox, **body: Any) -> Any:
    return sb.client.post("/_sandbox/clock", json=body, headers=sb.headers())


def _now(sb: Sandbox) -> str:
    return str(sb.client.get("/_sandbox/clock", headers=sb.headers()).json()["now"])


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"set": "9999-12-31T00:00:00Z"}, "past 8999-12-31T23:59:59Z"),
        ({"set": "9999-12-31T23:59:59-23:00"}, "an instant after the year 9999"),
        ({"set": "9000-01-01T00:00:00Z"}, "past 8999-12-31T23:59:59Z"),
        ({"advance": "P" + "9" * 4400 + "D"}, "of at most 32 characters"),
        ({"advance": "PT" + "9" * 30 + "S"}, "100 years (3153600000 seconds)"),
        ({"advance": "P99999W"}, "100 years (3153600000 seconds)"),
    ],
    ids=["set-9999", "set-offset-overflow", "set-9000", "4400-digits", "30-digits", "1917-years"],
)
def test_a_clock_beyond_what_the_sandbox_represents_is_a_400_naming_the_bound(
    sb: Sandbox, body: dict[str, Any], says: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert sb.create().status_code == 201
    before = _now(sb)
    with caplog.at_level(logging.ERROR):
        error = assert_error(_clock(sb, **body), 400, "invalid_request_body", CLOCK)
    assert says in error["message"], error["message"]
    assert not caplog.records  # a client's mistake, not a traceback in the log
    assert _now(sb) >= before and _now(sb) < "9000"
    # The namespace goes on answering.
    assert sb.create().status_code == 201
    assert sb.list().status_code == 200


def test_the_latest_clock_itself_is_usable_and_the_next_second_is_refused(sb: Sandbox) -> None:
    r = _clock(sb, set="8999-12-31T23:59:59Z", freeze=True)
    assert r.status_code == 200, r.text
    created = sb.create()
    assert created.status_code == 201, created.text
    assert sb.get(created.json()["id"]).status_code == 200
    assert sb.list().status_code == 200
    error = assert_error(_clock(sb, advance=1), 400, "invalid_request_body", CLOCK)
    assert "past 8999-12-31T23:59:59Z" in error["message"]
    assert _now(sb) == "8999-12-31T23:59:59Z"

"""In-process HTTP journeys through the lifecycle, as an integrator would make them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.sandbox_client import ACCOUNT_A, Sandbox, make_sandbox, new_id, sandbox_on, step
from tests.stores import sync
from vpp_sandbox.mock_server.lifecycle import Party

JOIN = [
    "AWAITING_CUSTOMER_CONSENT",
    "AWAITING_DEVICE_TELEMETRY",
    "CHECKING_ELIGIBILITY",
    "AWAITING_REGISTRATION",
    "REGISTERED",
    "ACTIVE",
]


@pytest.fixture(params=["sqlite", "postgres"])
def sb(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with sandbox_on(request.param, request) as sandbox:
        yield sandbox


def states(p: dict[str, Any], status: str | None = None) -> list[str]:
    return [e["state"] for e in p["participation_state"] if status is None or e["status"] == status]


def past(p: dict[str, Any]) -> list[str]:
    return [e["state"] for e in p["participation_state"] if e["status"] != "PENDING"]


def walk(sb: Sandbox, pid: str, path: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for state in path:
        extra: dict[str, Any] = (
            {"suspension_reasons": ["AWAITING_TELEMETRY"]} if state == "SUSPENDED" else {}
        )
        r = sb.update(pid, step(state, **extra))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["current_state"] == state
        assert sb.get(pid).json() == body  # retrieve returns what the update returned
    return body


def test_login_gives_an_hs256_jwt_with_the_contract_claims(sb: Sandbox) -> None:
    r = sb.client.get("/login", auth=(ACCOUNT_A, sb.key(live=True)))
    assert r.status_code == 200
    body = r.json()
    assert body["expires_in"] == 3600 and body["live_mode"] is True
    assert jwt.get_unverified_header(body["bearer_token"])["alg"] == "HS256"
    claims = jwt.decode(
        body["bearer_token"], sb.secret, algorithms=["HS256"], issuer="FlatPeakAPI"
    )
    assert claims["account_id"] == ACCOUNT_A == claims["sub"]
    assert claims["live_mode"] is True
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]


def test_create_then_journey_to_active(sb: Sandbox) -> None:
    r = sb.create(reference_id="AZ01346701301")
    assert r.status_code == 201, r.text
    p = r.json()
    assert r.headers["location"] == f"/vpp-participations/{p['id']}"
    assert p["current_state"] == "ENROLMENT_REQUESTED"
    assert states(p, "PENDING") == JOIN
    assert p["reference_id"] == "AZ01346701301"
    assert p["account_id"] == ACCOUNT_A and p["live_mode"] is False
    assert p["location_id"].startswith("loc_")
    assert p["provider"]["logo_url"].startswith("https://")
    assert p["programme"]["learn_more_url"].startswith("https://")
    assert sb.get(p["id"]).json() == p
    assert [x["id"] for x in sb.list().json()["data"]] == [p["id"]]

    active = walk(sb, p["id"], JOIN)
    assert past(active) == ["ENROLMENT_REQUESTED", *JOIN]
    assert active["control_active"] is True and active["telemetry_active"] is True
    assert states(active, "PENDING") == []
    assert active["time_created"] == p["time_created"]
    assert active["time_updated"] >= p["time_updated"]


def test_one_update_can_pass_through_several_states_with_times(sb: Sandbox) -> None:
    p = sb.create().json()
    created = p["time_created"]
    r = sb.update(
        p["id"],
        step("AWAITING_CUSTOMER_CONSENT", "COMPLETE", occurred_at=created),
        step("AWAITING_DEVICE_TELEMETRY", "COMPLETE"),
        step("AWAITING_LOCATION_TELEMETRY"),
        step("CHECKING_ELIGIBILITY", "PENDING"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert past(body) == [
        "ENROLMENT_REQUESTED",
        "AWAITING_CUSTOMER_CONSENT",
        "AWAITING_DEVICE_TELEMETRY",
        "AWAITING_LOCATION_TELEMETRY",
    ]
    assert states(body, "PENDING") == ["CHECKING_ELIGIBILITY"]
    assert body["participation_state"][1]["occurred_at"] == created


def test_suspension_and_resumption(sb: Sandbox) -> None:
    pid = sb.create().json()["id"]
    walk(sb, pid, JOIN)
    r = sb.update(pid, step("SUSPENDED", suspension_reasons=["AWAITING_TELEMETRY"]))
    assert r.status_code == 200
    s = r.json()
    assert s["suspension_reasons"] == ["AWAITING_TELEMETRY"]
    assert s["control_active"] is False and s["telemetry_active"] is False
    assert states(s, "PENDING") == ["ACTIVE"]
    # Same reasons again: idempotent. New reasons: a new SUSPENDED entry.
    assert sb.update(pid, step("SUSPENDED", suspension_reasons=["AWAITING_TELEMETRY"])).json() == s
    s2 = sb.update(pid, step("SUSPENDED", suspension_reasons=["OPERATOR_REQUEST"])).json()
    assert past(s2)[-2:] == ["SUSPENDED", "SUSPENDED"]
    assert s2["suspension_reasons"] == ["OPERATOR_REQUEST"]
    back = sb.update(pid, step("ACTIVE")).json()
    assert back["current_state"] == "ACTIVE" and back["suspension_reasons"] == []
    assert back["control_active"] is True


def test_leave_request_cancelled_returns_to_the_previous_state(sb: Sandbox) -> None:
    pid = sb.create().json()["id"]
    walk(sb, pid, [*JOIN, "SUSPENDED"])
    leaving = sb.update(pid, step("UNENROLMENT_REQUESTED")).json()
    assert states(leaving, "PENDING") == ["WINDING_DOWN", "UNENROLLED", "OFFBOARDED"]
    refused = sb.update(pid, step("ACTIVE"))
    assert refused.status_code == 409
    assert "SUSPENDED" in refused.json()["message"]
    back = sb.update(pid, step("SUSPENDED")).json()  # reasons restored
    assert back["current_state"] == "SUSPENDED"
    assert back["suspension_reasons"] == ["AWAITING_TELEMETRY"]


def test_leave_completed_to_offboarded(sb: Sandbox) -> None:
    pid = sb.create().json()["id"]
    walk(sb, pid, JOIN)
    gone = walk(sb, pid, ["UNENROLMENT_REQUESTED", "WINDING_DOWN", "UNENROLLED", "OFFBOARDED"])
    assert states(gone, "PENDING") == []
    assert gone["telemetry_active"] is False
    # Terminal: its own state again is accepted unchanged, anything else is a 409.
    assert sb.update(pid, step("OFFBOARDED")).json() == gone
    r = sb.update(pid, step("ACTIVE"))
    assert r.status_code == 409 and "terminal" in r.json()["message"]
    assert sb.get(pid).json() == gone


def test_failed_path(sb: Sandbox) -> None:
    pid = sb.create().json()["id"]
    failed = walk(sb, pid, ["AWAITING_CUSTOMER_CONSENT", "AWAITING_DEVICE_TELEMETRY", "FAILED"])
    assert states(failed, "PENDING") == []
    assert sb.update(pid, step("AWAITING_DEVICE_TELEMETRY")).status_code == 409


def test_ineligible_path_then_the_device_may_enrol_again(sb: Sandbox) -> None:
    body: dict[str, Any] = {"device_id": new_id("dev"), "programme_id": new_id("vpr")}
    first = sb.create(**body).json()
    dup = sb.create(**body)
    assert dup.status_code == 409
    assert dup.json()["code"] == "participation_exists"
    assert first["id"] in dup.json()["message"]
    walk(sb, first["id"], ["AWAITING_CUSTOMER_CONSENT", "AWAITING_DEVICE_TELEMETRY"])
    walk(sb, first["id"], ["CHECKING_ELIGIBILITY", "INELIGIBLE"])
    again = sb.create(**body)
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]


def test_resubmitting_the_current_state_is_idempotent(sb: Sandbox) -> None:
    pid = sb.create().json()["id"]
    p = walk(sb, pid, ["AWAITING_CUSTOMER_CONSENT"])
    for _ in range(3):
        assert sb.update(pid, step("AWAITING_CUSTOMER_CONSENT")).json() == p


def test_illegal_transition_is_409_and_leaves_the_object_unchanged(sb: Sandbox) -> None:
    pid = sb.create().json()["id"]
    before = walk(sb, pid, ["AWAITING_CUSTOMER_CONSENT"])
    r = sb.update(pid, step("ACTIVE"))
    assert r.status_code == 409
    err = r.json()
    assert err["code"] == "invalid_state_transition"
    assert err["context"] == "api.vpp_participation_update"
    assert "AWAITING_DEVICE_TELEMETRY, UNENROLMENT_REQUESTED, FAILED" in err["message"]
    assert sb.get(pid).json() == before


def test_unknown_ids_get_deterministic_display_data_and_known_ones_come_from_the_catalog() -> None:
    sb1, sb2 = make_sandbox(), make_sandbox()
    ids: dict[str, Any] = {
        "provider_id": new_id("prv"), "programme_id": new_id("vpr"), "device_id": new_id("dev")
    }
    a, b = sb1.create(**ids).json(), sb2.create(**ids).json()
    for key in ("provider", "programme", "location_id"):
        assert a[key] == b[key]
    known = Party(new_id("prv"), "Leap", "https://s.flatpeak.com/83b06a60e38c2.png")
    sync(sb1.app.state.catalog.register(
        providers=[known], device_locations={ids["device_id"]: "loc_" + "1" * 24}
    ))
    c = sb1.create(provider_id=known.id, device_id=ids["device_id"]).json()
    assert c["provider"]["provider_display_name"] == "Leap"
    assert c["location_id"] == "loc_" + "1" * 24

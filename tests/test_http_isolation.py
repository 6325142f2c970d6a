"""Namespaces: nothing crosses accounts or modes (404, never listed)."""

from __future__ import annotations

from tests.sandbox_client import ACCOUNT_A, ACCOUNT_B, make_sandbox, step

NAMESPACES = [(ACCOUNT_A, False), (ACCOUNT_A, True), (ACCOUNT_B, False), (ACCOUNT_B, True)]


def test_each_namespace_sees_only_its_own_participations() -> None:
    sb = make_sandbox()
    device = {"device_id": "dev_" + "d" * 24, "programme_id": "vpr_" + "e" * 24}
    owned = {}
    for account, live in NAMESPACES:
        # The same device and programme may be enrolled once in every namespace.
        r = sb.create(account, live, **device)
        assert r.status_code == 201, r.text
        assert r.json()["account_id"] == account and r.json()["live_mode"] is live
        owned[(account, live)] = r.json()["id"]
    for ns, pid in owned.items():
        listed = sb.list(*ns).json()["data"]
        assert [p["id"] for p in listed] == [pid]
        assert sb.list(*ns, device_id=device["device_id"]).json()["data"][0]["id"] == pid
        for other in NAMESPACES:
            if other == ns:
                assert sb.get(pid, *other).status_code == 200
                continue
            r = sb.get(pid, *other)
            assert r.status_code == 404 and r.json()["code"] == "participation_not_found"
            r = sb.update(
                pid, step("AWAITING_CUSTOMER_CONSENT"), account_id=other[0], live=other[1]
            )
            assert r.status_code == 404
            r = sb.list(*other, starting_after=pid)
            assert r.status_code == 400 and r.json()["code"] == "invalid_parameter"
    # Nothing above changed anyone's participation.
    for ns, pid in owned.items():
        assert sb.get(pid, *ns).json()["current_state"] == "ENROLMENT_REQUESTED"

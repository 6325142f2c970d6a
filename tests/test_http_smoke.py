"""The app builds, resolves every operationId and answers a request (Connexion resolves lazily)."""

from __future__ import annotations

from vpp_sandbox.mock_server.app import create_app
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.stores import open_store


def test_app_builds_and_serves_login_and_a_participation() -> None:
    settings = Settings(db=":memory:")
    app = create_app(settings, open_store(":memory:"))
    client = app.test_client()
    account = settings.accounts[0]
    login = client.get("/login", auth=(account.account_id, account.api_key))
    assert login.status_code == 200
    token = login.json()["bearer_token"]
    created = client.post(
        "/vpp-participations",
        json={
            "device_id": "dev_" + "1" * 24,
            "provider_id": "prv_" + "2" * 24,
            "programme_id": "vpr_" + "3" * 24,
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["current_state"] == "ENROLMENT_REQUESTED"


def test_swagger_ui_and_spec_are_served() -> None:
    client = create_app(Settings(db=":memory:"), open_store(":memory:")).test_client()
    assert client.get("/ui/").status_code == 200
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json()["info"]["title"].startswith("Flatpeak")

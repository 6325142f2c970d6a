"""The fast paths give the answers of the slow ones: token cache, compiled validators."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.stores import sync
from vpp_sandbox.mock_server.auth import Authenticator
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Settings
from vpp_sandbox.mock_server.validation import compiled


def test_a_cached_token_still_expires() -> None:
    now = [1_800_000_000.5]
    auth = Authenticator(Settings(token_ttl=60), clock=lambda: now[0])
    token = auth.issue(DEFAULT_ACCOUNT[0])["bearer_token"]
    first = sync(auth.verify(token))
    now[0] += 59
    assert sync(auth.verify(token)) == first  # from the cache
    now[0] += 1
    with pytest.raises(ApiError) as caught:
        sync(auth.verify(token))
    assert caught.value.code == "token_expired"


def test_a_cached_token_cannot_be_changed_by_its_caller() -> None:
    auth = Authenticator(Settings())
    token = auth.issue(DEFAULT_ACCOUNT[0])["bearer_token"]
    sync(auth.verify(token))["account_id"] = "acc_someone_else"
    assert sync(auth.verify(token))["account_id"] == DEFAULT_ACCOUNT[0].account_id


SCHEMA = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "nullable": True, "enum": ["A", "B"]},
        "at": {"type": "string", "format": "date-time"},
    },
}


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"reason": None}, True),
        ({"reason": "A"}, True),
        ({"reason": "C"}, False),
        ({"at": "2026-11-03T09:15:00Z"}, True),
        ({"at": "2026-11-03T09:15:60Z"}, False),  # Python's RFC 3339 check, as Connexion's
        ({"at": "2026-11-03 09:15:00Z"}, False),
    ],
)
def test_compiled_request_schema_agrees_with_connexion(
    body: dict[str, object], valid: bool
) -> None:
    check = compiled(SCHEMA)
    assert check is not None
    assert check(body) is valid


def test_write_only_schemas_are_left_to_jsonschema() -> None:
    assert compiled({"type": "object", "writeOnly": True}) is None


@pytest.mark.parametrize(
    "path", ["/ui/", "/openapi.json", "/openapi.yaml", "/_sandbox/ui/", "/_sandbox/openapi.json"]
)
def test_swagger_ui_and_specs_still_served(path: str) -> None:
    from vpp_sandbox.mock_server.app import create_app

    client = create_app(Settings(db=":memory:")).test_client()
    assert client.get(path).status_code == 200


class CountingStore:
    """The store, with each call of its coroutine methods counted by name."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.store, name)
        if not asyncio.iscoroutinefunction(value):
            return value

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await value(*args, **kwargs)

        return counted


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_retrieve_is_one_read_of_the_store(db: str, request: pytest.FixtureRequest) -> None:
    """One round trip: the participation is read with the namespace's clock (PostgreSQL)."""
    from vpp_sandbox.mock_server.app import create_app
    from vpp_sandbox.mock_server.stores import open_store

    url = ":memory:" if db == "sqlite" else request.getfixturevalue("postgres").database()
    counting = CountingStore(open_store(url))
    client = create_app(Settings(db=url), counting).test_client()  # type: ignore[arg-type]
    account = DEFAULT_ACCOUNT[0]
    token = client.get("/login", auth=(account.account_id, account.api_key)).json()
    headers = {"Authorization": f"Bearer {token['bearer_token']}"}
    body = {"device_id": "dev_" + "4" * 24, "provider_id": "prv_" + "5" * 24,
            "programme_id": "vpr_" + "6" * 24}
    made = client.post("/vpp-participations", json=body, headers=headers).json()
    counting.calls.clear()
    got = client.get(f"/vpp-participations/{made['id']}", headers=headers)
    assert got.status_code == 200 and got.json() == made
    assert counting.calls == ["namespace_state"]
    counting.calls.clear()
    missing = client.get("/vpp-participations/vpp_" + "0" * 24, headers=headers)
    assert missing.status_code == 404 and missing.json()["code"] == "participation_not_found"

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


@pytest.mark.parametrize("db", ["postgres", "sqlite-one-statement", "sqlite"])
def test_a_list_is_one_read_of_the_store(db: str, request: pytest.FixtureRequest) -> None:
    """One round trip: the page is read with the namespace's clock, for every query the list's
    validator accepts; a refused query or an unknown cursor reads nothing more than its error
    needs. SQLite, whose statements cost no round trip, reads the page apart (cheaper there),
    and the same answers come both ways."""
    from vpp_sandbox.mock_server.app import create_app
    from vpp_sandbox.mock_server.stores import open_store

    url = request.getfixturevalue("postgres").database() if db == "postgres" else ":memory:"
    store = open_store(url)
    if db == "sqlite-one-statement":
        store.page_beside_state = True
    reads = ["namespace_state"] if store.page_beside_state else ["namespace_state", "list_json"]
    counting = CountingStore(store)
    client = create_app(Settings(db=url), counting).test_client()  # type: ignore[arg-type]
    account = DEFAULT_ACCOUNT[0]
    token = client.get("/login", auth=(account.account_id, account.api_key)).json()
    headers = {"Authorization": f"Bearer {token['bearer_token']}"}
    device = "dev_" + "4" * 24
    ids = [
        client.post("/vpp-participations", headers=headers, json={
            "device_id": device if i % 2 else "dev_" + f"{i:024x}",
            "provider_id": "prv_" + "5" * 24, "programme_id": f"vpr_{i:024x}",
        }).json()["id"]
        for i in range(5)
    ]
    full = [p["id"] for p in client.get("/vpp-participations", headers=headers).json()["data"]]
    assert sorted(full) == sorted(ids)
    mine = [pid for pid in full if pid in ids[1::2]]
    after, before = full.index(ids[3]) + 1, full.index(ids[1])
    for query, expected, more in [
        ("", full, False),
        ("limit=2", full[:2], True),
        (f"limit=2&starting_after={ids[3]}", full[after : after + 2], len(full) > after + 2),
        (f"ending_before={ids[1]}&limit=1", full[before - 1 : before], before > 1),
        (f"device_id={device}", mine, False),
    ]:
        counting.calls.clear()
        got = client.get(f"/vpp-participations?{query}", headers=headers)
        assert got.status_code == 200, got.text
        assert counting.calls == reads, query
        assert [p["id"] for p in got.json()["data"]] == expected, query
        assert got.json()["has_more"] is more, query
    for refused in ["limit=0", "limit=101", f"starting_after={ids[0]}&ending_before={ids[1]}"]:
        counting.calls.clear()
        got = client.get(f"/vpp-participations?{refused}", headers=headers)
        assert got.status_code == 400 and counting.calls == ["namespace_state"], refused
    unknown = client.get("/vpp-participations?starting_after=vpp_" + "0" * 24, headers=headers)
    assert unknown.status_code == 400 and unknown.json()["code"] == "invalid_parameter"

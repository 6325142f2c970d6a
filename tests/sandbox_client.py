"""Helpers for the in-process HTTP tests of the mock server (no sockets, no fixtures shared)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.stores import sync
from vpp_sandbox.mock_server.app import create_app
from vpp_sandbox.mock_server.settings import Account, Settings
from vpp_sandbox.mock_server.store import Store
from vpp_sandbox.mock_server.stores import open_store

ACCOUNT_A = "acc_" + "a1" * 12
ACCOUNT_B = "acc_" + "b2" * 12
ACCOUNTS = (
    Account(ACCOUNT_A, "sk_test_alpha0000000000000001"),
    Account(ACCOUNT_A, "sk_live_alpha0000000000000001"),
    Account(ACCOUNT_B, "sk_test_bravo0000000000000002"),
    Account(ACCOUNT_B, "sk_live_bravo0000000000000002"),
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def create_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "device_id": new_id("dev"),
        "provider_id": new_id("prv"),
        "programme_id": new_id("vpr"),
    }
    body.update(overrides)
    return body


def step(state: str, status: str = "IN_PROGRESS", **extra: Any) -> dict[str, Any]:
    return {"state": state, "status": status, **extra}


@dataclass
class Sandbox:
    """An in-process app, its store and a test client, with token helpers."""

    settings: Settings
    store: Store
    app: Any
    client: Any
    _tokens: dict[tuple[str, bool], str] = field(default_factory=dict)

    @property
    def secret(self) -> bytes:
        """The signing secret the app uses: VPP_JWT_SECRET, else the data's own."""
        if self.settings.jwt_secret:
            return self.settings.jwt_secret.encode()
        portal = getattr(self.client, "portal", None)  # a client kept open has its own loop
        if portal is not None:
            return bytes(portal.call(self.store.signing_secret))
        return sync(self.store.signing_secret())

    def key(self, account_id: str = ACCOUNT_A, live: bool = False) -> str:
        prefix = "sk_live_" if live else "sk_test_"
        return next(
            a.api_key
            for a in self.settings.accounts
            if a.account_id == account_id and a.api_key.startswith(prefix)
        )

    def token(self, account_id: str = ACCOUNT_A, live: bool = False) -> str:
        if (account_id, live) not in self._tokens:
            r = self.client.get("/login", auth=(account_id, self.key(account_id, live)))
            assert r.status_code == 200, r.text
            self._tokens[(account_id, live)] = r.json()["bearer_token"]
        return self._tokens[(account_id, live)]

    def headers(self, account_id: str = ACCOUNT_A, live: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(account_id, live)}"}

    def create(self, account_id: str = ACCOUNT_A, live: bool = False, **body: Any) -> Any:
        return self.client.post(
            "/vpp-participations",
            json=create_body(**body),
            headers=self.headers(account_id, live),
        )

    def update(
        self, pid: str, *records: dict[str, Any], account_id: str = ACCOUNT_A, live: bool = False
    ) -> Any:
        return self.client.post(
            f"/vpp-participations/{pid}",
            json={"participation_state": list(records)},
            headers=self.headers(account_id, live),
        )

    def get(self, pid: str, account_id: str = ACCOUNT_A, live: bool = False) -> Any:
        return self.client.get(f"/vpp-participations/{pid}", headers=self.headers(account_id, live))

    def list(self, account_id: str = ACCOUNT_A, live: bool = False, **params: Any) -> Any:
        return self.client.get(
            "/vpp-participations", params=params, headers=self.headers(account_id, live)
        )


def make_sandbox(db: str = ":memory:", **settings: Any) -> Sandbox:
    s = Settings(db=db, accounts=ACCOUNTS, **settings)
    store = open_store(db)
    app = create_app(s, store)
    return Sandbox(s, store, app, app.test_client())


@contextmanager
def sandbox_on(kind: str, request: pytest.FixtureRequest, **settings: Any) -> Iterator[Sandbox]:
    """An in-process sandbox on `kind` of store: "sqlite" (in memory) or "postgres" (a fresh
    database on the session's server). The client keeps one event loop for all its requests,
    as a server does (the PostgreSQL pool belongs to the loop it opened in)."""
    if kind == "sqlite":
        yield make_sandbox(**settings)
        return
    sb = make_sandbox(request.getfixturevalue("postgres").database(), **settings)
    with sb.client:
        yield sb
        sb.client.portal.call(sb.store.close)  # in the loop the pool belongs to

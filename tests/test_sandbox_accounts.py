"""Accounts on demand: POST/DELETE /_sandbox/accounts, their isolation, permissions and limits."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import jwt
import pytest
from openapi_schema_validator import OAS30Validator

from tests.sandbox_client import ACCOUNT_A, ACCOUNT_B, Sandbox, create_body, make_sandbox
from tests.spec_tools import resolve_refs
from tests.stores import sync
from vpp_sandbox import openapi
from vpp_sandbox.cli import build_parser
from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.server import banner
from vpp_sandbox.mock_server.settings import Settings

ADMIN = "admin-key-for-the-tests-0123456789"
SPEC = openapi.load(openapi.CONTROL)


def schema(name: str) -> Any:
    return resolve_refs(SPEC, SPEC["components"]["schemas"][name])


def error(r: Any, status: int, code: str, context: str) -> str:
    """The response is the error object with this status, code and context; its message."""
    assert r.status_code == status, r.text
    body = r.json()
    OAS30Validator(schema("Error")).validate(body)
    assert (body["code"], body["context"]) == (code, context), body
    assert r.headers["content-type"].startswith("application/json")
    return str(body["message"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def create(sb: Sandbox, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = sb.client.post("/_sandbox/accounts", headers=headers or {})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    OAS30Validator(schema("SandboxAccount")).validate(body)
    return body


def login(sb: Sandbox, account: dict[str, Any], live: bool = False) -> Any:
    key = account["live_key"] if live else account["test_key"]
    return sb.client.get("/login", auth=(account["account_id"], key))


def token(sb: Sandbox, account: dict[str, Any], live: bool = False) -> str:
    r = login(sb, account, live)
    assert r.status_code == 200, r.text
    return str(r.json()["bearer_token"])


def delete(sb: Sandbox, account_id: str, headers: dict[str, str] | None = None) -> Any:
    return sb.client.delete(f"/_sandbox/accounts/{account_id}", headers=headers or {})


def test_a_new_account_has_random_keys_and_logs_in_at_once_in_both_modes() -> None:
    sb = make_sandbox()
    first, second = create(sb), create(sb)
    assert re.fullmatch(r"acc_[0-9a-f]{24}", first["account_id"])
    assert re.fullmatch(r"sk_test_[0-9a-f]{32}", first["test_key"])
    assert re.fullmatch(r"sk_live_[0-9a-f]{32}", first["live_key"])
    assert {first[k] for k in ("account_id", "test_key", "live_key")}.isdisjoint(
        {second[k] for k in ("account_id", "test_key", "live_key")}
    )
    for live in (False, True):
        r = login(sb, first, live)
        assert r.status_code == 200 and r.json()["live_mode"] is live
        claims = jwt.decode(r.json()["bearer_token"], options={"verify_signature": False})
        assert claims["account_id"] == first["account_id"] and claims["live_mode"] is live
    # A key of one account is not a key of another, nor of the other mode.
    r = sb.client.get("/login", auth=(first["account_id"], second["test_key"]))
    error(r, 401, "credentials_invalid", "api.login")
    r = sb.client.get("/login", auth=(first["account_id"], "sk_live_" + first["test_key"][8:]))
    error(r, 401, "credentials_invalid", "api.login")


def test_its_namespaces_are_isolated_with_their_own_clock_and_autopilot() -> None:
    sb = make_sandbox()
    acc = create(sb)
    mine = bearer(token(sb, acc))
    created = sb.client.post("/vpp-participations", json=create_body(), headers=mine)
    assert created.status_code == 201 and created.json()["account_id"] == acc["account_id"]
    pid = created.json()["id"]
    # Nobody else sees it: another account, the default account, nor its own live mode.
    for other in (sb.headers(ACCOUNT_A), sb.headers(ACCOUNT_B), bearer(token(sb, acc, True))):
        assert sb.client.get(f"/vpp-participations/{pid}", headers=other).status_code == 404
        assert sb.client.get("/vpp-participations", headers=other).json()["data"] == []
    # Its clock and autopilot are its own.
    before = sb.client.get("/_sandbox/clock", headers=sb.headers(ACCOUNT_A)).json()
    r = sb.client.post("/_sandbox/clock", json={"advance": "P7D"}, headers=mine)
    assert r.status_code == 200 and r.json()["account_id"] == acc["account_id"]
    after = sb.client.get("/_sandbox/clock", headers=sb.headers(ACCOUNT_A)).json()
    assert after["now"][:13] == before["now"][:13]  # not a week on
    assert sb.client.get(f"/vpp-participations/{pid}", headers=mine).json()["current_state"] == (
        "ACTIVE"
    )
    r = sb.client.post("/_sandbox/clock", json={"autopilot": False}, headers=mine)
    assert r.json()["autopilot"] is False
    assert sb.client.get("/_sandbox/clock", headers=sb.headers(ACCOUNT_A)).json()["autopilot"]


def test_deleting_takes_everything_in_it_and_nothing_else() -> None:
    sb = make_sandbox()
    acc, other = create(sb), create(sb)
    for account, live in ((acc, False), (acc, True), (acc, True), (other, False)):
        headers = bearer(token(sb, account, live))
        assert sb.client.post("/vpp-participations", json=create_body(), headers=headers)
        r = sb.client.post("/_sandbox/clock", json={"advance": 60}, headers=headers)
        assert r.status_code == 200
    sb.create()  # the default test account's
    old_tokens = [token(sb, acc), token(sb, acc, True)]
    rows_before = sync(sb.store.count())

    r = delete(sb, acc["account_id"], bearer(old_tokens[1]))  # its own token, live mode
    assert r.status_code == 200, r.text
    OAS30Validator(schema("SandboxAccountDeleted")).validate(r.json())
    assert r.json() == {
        "object": "sandbox_account",
        "account_id": acc["account_id"],
        "deleted": True,
        "deleted_participations": {"test": 1, "live": 2},
        "deleted_clocks": 2,
    }
    assert sync(sb.store.count()) == rows_before - 3
    assert sync(sb.store.find_account_keys(acc["account_id"])) is None
    for live in (False, True):
        assert sync(sb.store.clock_state(Namespace(acc["account_id"], live))) is None
    # Its keys and tokens stop working at once (also the ones verified before, cached).
    for live in (False, True):
        error(login(sb, acc, live), 401, "credentials_invalid", "api.login")
    for old in old_tokens:
        r = sb.client.get("/vpp-participations", headers=bearer(old))
        assert "deleted" in error(r, 401, "token_invalid", "api.vpp_participation_list")
    # The other account and the default one keep everything.
    mine = bearer(token(sb, other))
    assert len(sb.client.get("/vpp-participations", headers=mine).json()["data"]) == 1
    assert len(sb.list().json()["data"]) == 1
    assert sync(sb.store.clock_state(Namespace(other["account_id"], False))) is not None


def test_an_open_sandbox_lets_anyone_create_but_only_the_account_delete_itself() -> None:
    sb = make_sandbox()
    acc = create(sb)  # no credentials
    create(sb, sb.headers(ACCOUNT_A))  # an account's valid token is fine too
    message = error(
        delete(sb, acc["account_id"]), 401, "authentication_required", "sandbox.account_delete"
    )
    assert "its own bearer token" in message
    # Another account's token: 403, for an existing and for an unknown account alike.
    for target in (acc["account_id"], "acc_" + "0" * 24):
        r = delete(sb, target, sb.headers(ACCOUNT_A))
        error(r, 403, "account_forbidden", "sandbox.account_delete")
    # Credentials that are sent are checked, even where none are needed.
    r = sb.client.post("/_sandbox/accounts", headers=bearer("not-a-key"))
    assert "no admin key" in error(r, 401, "admin_key_invalid", "sandbox.account_create")
    forged = jwt.encode(
        {"account_id": ACCOUNT_A, "live_mode": False, "iss": "FlatPeakAPI", "sub": ACCOUNT_A,
         "exp": 4102444800, "nbf": 0, "iat": 0},
        "another-signing-secret-of-32-bytes-or-more",
        algorithm="HS256",
    )
    r = sb.client.post("/_sandbox/accounts", headers=bearer(forged))
    error(r, 401, "token_invalid", "sandbox.account_create")
    r = sb.client.post("/_sandbox/accounts", headers={"Authorization": "Basic eDp5"})
    error(r, 401, "token_invalid", "sandbox.account_create")
    assert delete(sb, acc["account_id"], bearer(token(sb, acc))).status_code == 200


def test_a_shared_sandbox_needs_the_admin_key_to_create() -> None:
    sb = make_sandbox(admin_key=ADMIN)
    r = sb.client.post("/_sandbox/accounts")
    assert "admin key" in error(r, 401, "authentication_required", "sandbox.account_create")
    r = sb.client.post("/_sandbox/accounts", headers=bearer(ADMIN + "x"))
    error(r, 401, "admin_key_invalid", "sandbox.account_create")
    r = sb.client.post("/_sandbox/accounts", headers=sb.headers(ACCOUNT_A))
    error(r, 403, "admin_key_required", "sandbox.account_create")
    acc = create(sb, bearer(ADMIN))
    assert login(sb, acc).status_code == 200
    # Deleting: the admin, or the account itself; nobody without credentials.
    other = create(sb, bearer(ADMIN))
    error(delete(sb, acc["account_id"]), 401, "authentication_required", "sandbox.account_delete")
    r = delete(sb, acc["account_id"], bearer(token(sb, other)))
    error(r, 403, "account_forbidden", "sandbox.account_delete")
    assert delete(sb, acc["account_id"], bearer(ADMIN)).status_code == 200
    assert delete(sb, other["account_id"], bearer(token(sb, other))).status_code == 200
    r = delete(sb, acc["account_id"], bearer(ADMIN))
    assert "deleted already" in error(r, 404, "account_not_found", "sandbox.account_delete")
    r = delete(sb, ACCOUNT_A, bearer(ADMIN))
    assert "--account" in error(r, 409, "account_not_deletable", "sandbox.account_delete")
    assert len(sb.list().json()["data"]) == 0 and sb.token()  # the configured account is intact
    r = delete(sb, "not-an-account", bearer(ADMIN))
    assert "account_id" in error(r, 400, "invalid_parameter", "sandbox.account_delete")


def test_the_cap_on_accounts_gives_a_clear_error_and_frees_up_on_delete() -> None:
    sb = make_sandbox(max_accounts=2)
    first, _ = create(sb), create(sb)
    r = sb.client.post("/_sandbox/accounts")
    message = error(r, 409, "account_limit_reached", "sandbox.account_create")
    assert "maximum of 2" in message and "--max-accounts" in message
    assert "DELETE /_sandbox/accounts/" in message
    assert delete(sb, first["account_id"], bearer(token(sb, first))).status_code == 200
    create(sb)


@pytest.mark.slow
def test_accounts_survive_a_restart_and_keep_no_usable_key_in_the_data_file(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "sandbox.db")
    first = make_sandbox(db)
    acc = create(first)
    pid = first.client.post(
        "/vpp-participations", json=create_body(), headers=bearer(token(first, acc))
    ).json()["id"]
    sync(first.store.close())
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert acc["account_id"].encode() in stored
    assert acc["test_key"].encode() not in stored and acc["live_key"].encode() not in stored

    second = make_sandbox(db)
    mine = bearer(token(second, acc))
    assert second.client.get(f"/vpp-participations/{pid}", headers=mine).status_code == 200
    assert delete(second, acc["account_id"], mine).status_code == 200
    sync(second.store.close())
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sandbox_accounts").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM participations").fetchone() == (0,)


def test_faults_on_purpose_apply_to_the_accounts_endpoints_too() -> None:
    sb = make_sandbox()
    r = sb.client.post("/_sandbox/accounts", headers={"X-Sandbox-Fault": "rate_limited"})
    error(r, 429, "rate_limited", "sandbox.account_create")
    assert r.headers["retry-after"] == "1"


def test_settings_flags_and_banner_of_accounts_on_demand(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"VPP_ADMIN_KEY": "from-env-0123456789", "VPP_MAX_ACCOUNTS": "7"}
    settings = Settings.from_env(env)
    assert (settings.admin_key, settings.max_accounts) == ("from-env-0123456789", 7)
    assert Settings.from_env({}).admin_key is None and Settings.from_env({}).max_accounts == 1000
    # An empty variable is a key given empty (refused by `serve`), never "no key".
    assert Settings.from_env({"VPP_ADMIN_KEY": ""}).admin_key == ""
    args = build_parser().parse_args(["serve", "--admin-key", "k", "--max-accounts", "5"])
    assert (args.admin_key, args.max_accounts) == ("k", 5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--max-accounts", "0"])
    assert "at least 1" in capsys.readouterr().err
    assert "open to anyone" in banner(Settings())
    shared = banner(Settings(admin_key="secret-admin-key"))
    assert "needs the admin key" in shared and "secret-admin-key" not in shared

"""Every way to mint a bearer token without the server's secret is a 401 `token_invalid`.

And the secret itself: random per data file, kept with it (tokens survive a restart), never a
default from the source, overridden by VPP_JWT_SECRET.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.sandbox_client import ACCOUNT_A, ACCOUNT_B, Sandbox, make_sandbox
from tests.stores import sync
from tests.test_http_errors import assert_error
from vpp_sandbox.mock_server.app import create_app
from vpp_sandbox.mock_server.server import exposure_warning
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Account, Settings
from vpp_sandbox.mock_server.stores import open_store

OLD_DEFAULT_SECRET = "vpp-sandbox-local-signing-secret"  # in the source before issue 10
LIST = "api.vpp_participation_list"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT built by hand: any header, any claims, HS256 over them with `key` (or no signature)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def claims(account_id: str = ACCOUNT_A, live: bool = False, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "account_id": account_id,
        "live_mode": live,
        "iss": "FlatPeakAPI",
        "sub": account_id,
        "exp": now + 3600,
        "nbf": now,
        "iat": now,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()
HS256 = {"alg": "HS256", "typ": "JWT"}
ES256 = b'{"alg": "ES256", "typ": "JWT"}'


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    return make_sandbox()


def resign(token: str, **changes: Any) -> str:
    """A valid token's payload changed, its original signature kept."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded.update(changes)
    return f"{header}.{b64(json.dumps(decoded).encode())}.{signature}"


def forgeries(sb: Sandbox) -> list[tuple[str, str]]:
    """(how, token) for every way to mint a token without the server's secret."""
    valid = sb.token()
    header, payload, _ = valid.split(".")
    api_key = sb.key().encode()
    return [
        ("alg none", raw_token({"alg": "none", "typ": "JWT"}, claims(), None)),
        ("alg None", raw_token({"alg": "None"}, claims(), None)),
        ("stripped signature", f"{header}.{payload}."),
        ("no signature part", f"{header}.{payload}"),
        ("HS256, the old default secret", jwt.encode(claims(), OLD_DEFAULT_SECRET, "HS256")),
        (
            "HS256, the old default secret, live mode, 100 years",
            jwt.encode(
                claims(live=True, exp=int(time.time()) + 100 * 365 * 86400),
                OLD_DEFAULT_SECRET,
                "HS256",
            ),
        ),
        ("HS512, the old default secret", jwt.encode(claims(), OLD_DEFAULT_SECRET * 2, "HS512")),
        (
            "HS384 header, HS256 MAC",
            raw_token({"alg": "HS384"}, claims(), OLD_DEFAULT_SECRET.encode()),
        ),
        # Key confusion: what a tenant knows used as the HMAC key, or an asymmetric algorithm
        # whose "public key" would be fed to HMAC by a confused verifier.
        ("HS256 keyed with the tenant's API key", raw_token(HS256, claims(), api_key)),
        ("HS256 keyed with the account id", raw_token(HS256, claims(), ACCOUNT_A.encode())),
        ("HS256 keyed with the empty string", raw_token(HS256, claims(), b"")),
        ("RS256 header, HMAC'd with the API key", raw_token({"alg": "RS256"}, claims(), api_key)),
        ("ES256 header, random signature", f"{b64(ES256)}.{payload}.{b64(b'x' * 64)}"),
        ("re-signed payload: another account", resign(valid, account_id=ACCOUNT_B, sub=ACCOUNT_B)),
        ("re-signed payload: live mode", resign(valid, live_mode=True)),
        ("re-signed payload: 100 years", resign(valid, exp=int(time.time()) + 3153600000)),
        (
            "header with kid, the old default secret",
            jwt.encode(claims(), OLD_DEFAULT_SECRET, "HS256", headers={"kid": "1"}),
        ),
        ("not a JWT", "not.a.jwt"),
        ("garbage", "A" * 500),
        ("the API key itself", sb.key()),
    ]


@pytest.mark.parametrize("index", range(20))
def test_a_token_minted_without_the_secret_is_401_token_invalid(sb: Sandbox, index: int) -> None:
    how, token = forgeries(sb)[index]
    headers = {"Authorization": f"Bearer {token}"}
    r = sb.client.get("/vpp-participations", headers=headers)
    body = assert_error(r, 401, "token_invalid", LIST)
    assert "GET /login" in body["message"], how
    before = sync(sb.store.count())
    r = sb.client.post(
        "/vpp-participations",
        json={
            "device_id": "dev_" + "1" * 24,
            "provider_id": "prv_" + "2" * 24,
            "programme_id": "vpr_" + "3" * 24,
        },
        headers=headers,
    )
    assert_error(r, 401, "token_invalid", "api.vpp_participation_create")
    assert sync(sb.store.count()) == before, how
    r = sb.client.post("/_sandbox/reset", headers=headers)
    assert_error(r, 401, "token_invalid", "sandbox.reset")


def test_every_forgery_is_listed(sb: Sandbox) -> None:
    assert len(forgeries(sb)) == 20


@pytest.mark.parametrize(
    ("how", "changes"),
    [
        ("lifetime of 100 years", {"exp": int(time.time()) + 100 * 365 * 86400}),
        ("lifetime of 2 hours", {"exp": int(time.time()) + 7200}),
        (
            "issued an hour from now",
            {
                "iat": int(time.time()) + 3600,
                "nbf": int(time.time()) + 3600,
                "exp": int(time.time()) + 7200,
            },
        ),
        ("nbf after iat", {"nbf": int(time.time()) + 60}),
        ("no exp", {"exp": _DROP}),
        ("no iat", {"iat": _DROP}),
        ("no nbf", {"nbf": _DROP}),
        ("no sub", {"sub": _DROP}),
        ("no account_id", {"account_id": _DROP}),
        ("no live_mode", {"live_mode": _DROP}),
        ("no iss", {"iss": _DROP}),
        ("another issuer", {"iss": "Elsewhere"}),
        ("sub is another account", {"sub": ACCOUNT_B}),
        ("live_mode a string", {"live_mode": "false"}),
        ("exp a float", {"exp": time.time() + 3600.5}),
        ("iat a bool", {"iat": True}),
        ("unknown account", {"account_id": "acc_" + "0" * 24, "sub": "acc_" + "0" * 24}),
    ],
)
def test_a_token_signed_with_the_secret_but_not_as_issued_is_401(
    sb: Sandbox, how: str, changes: dict[str, Any]
) -> None:
    """Even the right key does not make a token this server never issues acceptable."""
    token = raw_token(HS256, claims(**changes), sb.secret)
    r = sb.client.get("/vpp-participations", headers={"Authorization": f"Bearer {token}"})
    assert_error(r, 401, "token_invalid", LIST)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "typ": "JWT", "kid": "1"},
        {"alg": "HS256", "jku": "https://attacker.example/keys.json"},
        {"alg": "HS256", "typ": "JWE"},
        {"alg": "HS256", "crit": ["exp"]},
    ],
)
def test_a_header_this_server_never_writes_is_401(sb: Sandbox, header: dict[str, Any]) -> None:
    token = raw_token(header, claims(), sb.secret)
    r = sb.client.get("/vpp-participations", headers={"Authorization": f"Bearer {token}"})
    assert_error(r, 401, "token_invalid", LIST)


def test_the_right_key_and_the_issued_shape_pass(sb: Sandbox) -> None:
    """The control for the two tests above: a hand-made token exactly as issued is accepted."""
    token = raw_token(HS256, claims(), sb.secret)
    r = sb.client.get("/vpp-participations", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    expired = raw_token(HS256, claims(iat=1000, nbf=1000, exp=4600), sb.secret)
    r = sb.client.get("/vpp-participations", headers={"Authorization": f"Bearer {expired}"})
    assert_error(r, 401, "token_expired", LIST)


def test_a_live_token_needs_a_live_key() -> None:
    """An account with only a test key gets no live-mode token, not even one signed right."""
    test_only = "acc_" + "c3" * 12
    settings = Settings(
        db=":memory:", accounts=(Account(test_only, "sk_test_charlie0000000000003"),)
    )
    store = open_store(":memory:")
    app = create_app(settings, store)
    client = app.test_client()
    secret = sync(store.signing_secret())
    live = raw_token(HS256, claims(test_only, live=True), secret)
    r = client.get("/vpp-participations", headers={"Authorization": f"Bearer {live}"})
    assert_error(r, 401, "token_invalid", LIST)
    test = raw_token(HS256, claims(test_only, live=False), secret)
    r = client.get("/vpp-participations", headers={"Authorization": f"Bearer {test}"})
    assert r.status_code == 200


def test_there_is_no_default_secret() -> None:
    assert Settings().jwt_secret is None
    assert Settings.from_env({}).jwt_secret is None
    a, b = make_sandbox(), make_sandbox()
    assert a.secret != b.secret and len(a.secret) == 32


@pytest.mark.slow
def test_the_secret_is_kept_with_the_data_file(tmp_path: Path) -> None:
    """Tokens survive a restart on the same file; another data file's tokens do not verify."""
    first = make_sandbox(db=str(tmp_path / "a.db"))
    token = first.token()
    secret = first.secret
    sync(first.store.close())
    restarted = make_sandbox(db=str(tmp_path / "a.db"))
    assert restarted.secret == secret
    r = restarted.client.get("/vpp-participations", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    other = make_sandbox(db=str(tmp_path / "b.db"))
    assert other.secret != secret
    r = other.client.get("/vpp-participations", headers={"Authorization": f"Bearer {token}"})
    assert_error(r, 401, "token_invalid", LIST)
    sync(restarted.store.close())
    sync(other.store.close())


def test_vpp_jwt_secret_overrides_the_data_files_secret(tmp_path: Path) -> None:
    plain = make_sandbox(db=str(tmp_path / "a.db"))
    data_token = plain.token()
    sync(plain.store.close())
    settings = Settings.from_env({"VPP_JWT_SECRET": "s" * 40}, db=str(tmp_path / "a.db"))
    assert settings.jwt_secret == "s" * 40
    overridden = make_sandbox(db=str(tmp_path / "a.db"), jwt_secret="s" * 40)
    token = overridden.token()
    assert jwt.decode(token, "s" * 40, algorithms=["HS256"], issuer="FlatPeakAPI")
    r = overridden.client.get(
        "/vpp-participations", headers={"Authorization": f"Bearer {data_token}"}
    )
    assert_error(r, 401, "token_invalid", LIST)
    sync(overridden.store.close())


# -- the start-up warning -----------------------------------------------------------------------

STRONG = (
    Account("acc_" + "d4" * 12, "sk_test_" + "9f" * 16),
    Account("acc_" + "d4" * 12, "sk_live_" + "8e" * 16),
)


def test_loopback_never_warns() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        assert exposure_warning(Settings(host=host)) is None


@pytest.mark.parametrize(
    ("settings", "published", "says"),
    [
        (Settings(host="0.0.0.0"), (), "the default account's key"),
        (
            Settings(host="::", accounts=STRONG, jwt_secret="short"),
            (),
            "VPP_JWT_SECRET has 5 bytes",
        ),
        (
            Settings(host="192.168.1.10", accounts=(Account("acc_x", "sk_test_abc"),)),
            (),
            "only 3 characters",
        ),
        (Settings(host="sandbox.example.com", accounts=STRONG), STRONG[:1], "seeded world"),
        (
            Settings(host="0.0.0.0", accounts=STRONG, jwt_secret=OLD_DEFAULT_SECRET),
            (),
            "published default",
        ),
    ],
)
def test_weak_credentials_beyond_loopback_warn(
    settings: Settings, published: tuple[Account, ...], says: str
) -> None:
    warning = exposure_warning(settings, published)
    assert warning is not None and says in warning
    assert "WARNING" in warning and "--host 127.0.0.1" in warning


def test_strong_credentials_beyond_loopback_do_not_warn() -> None:
    assert exposure_warning(Settings(host="0.0.0.0", accounts=STRONG)) is None
    assert exposure_warning(Settings(host="0.0.0.0", accounts=STRONG, jwt_secret="k" * 32)) is None


@pytest.mark.slow
def test_serve_prints_the_warning_to_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`serve` itself (uvicorn replaced: nothing listens) warns on stderr before it listens."""
    import uvicorn

    from vpp_sandbox.mock_server import server

    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append(kw))
    open_sandbox = Settings(host="0.0.0.0", db=str(tmp_path / "s.db"), allow_open_accounts=True)
    assert server.serve(open_sandbox) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and DEFAULT_ACCOUNT[0].account_id in err
    assert ran and ran[0]["host"] == "0.0.0.0"
    assert server.serve(Settings(host="127.0.0.1", db=str(tmp_path / "s.db"))) == 0
    assert "WARNING" not in capsys.readouterr().err


ADMIN = "an-admin-key-of-24-chars"


@pytest.mark.parametrize(
    ("environ", "flags", "says"),
    [
        ({"VPP_HOST": "0.0.0.0"}, [], "anyone who reaches the port may create accounts"),
        ({}, ["--host", "192.168.1.10"], "--allow-open-accounts"),
        ({"VPP_ADMIN_KEY": ""}, [], "the admin key (--admin-key, VPP_ADMIN_KEY) is empty"),
        ({"VPP_ADMIN_KEY": "  "}, [], "has only 2 characters"),
        ({}, ["--admin-key", "k"], "has only 1 characters"),
        ({"VPP_ADMIN_KEY": "x" * 15, "VPP_HOST": "0.0.0.0"}, [], "16 or more random characters"),
    ],
    ids=["env-host", "flag-host", "empty-key", "blank-key", "1-char-key", "15-char-key"],
)
def test_serve_refuses_an_open_or_guessable_exposure_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    environ: dict[str, str],
    flags: list[str],
    says: str,
) -> None:
    """The real command line (uvicorn replaced: nothing listens): exit 2 and the reason."""
    import uvicorn

    from vpp_sandbox.cli import main

    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append(kw))
    for name in ("VPP_HOST", "VPP_ADMIN_KEY", "VPP_ALLOW_OPEN_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--db", str(tmp_path / "s.db"), *flags]) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert not ran


@pytest.mark.parametrize(
    "flags",
    [
        ["--host", "0.0.0.0", "--admin-key", ADMIN],
        ["--host", "0.0.0.0", "--allow-open-accounts"],
        ["--host", "127.0.0.1"],
        ["--admin-key", "x" * 16],
    ],
    ids=["admin-key", "allowed-open", "loopback", "16-char-key"],
)
def test_serve_starts_with_an_admin_key_or_open_on_purpose(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: list[str]
) -> None:
    import uvicorn

    from vpp_sandbox.cli import main

    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append(kw))
    for name in ("VPP_HOST", "VPP_ADMIN_KEY", "VPP_ALLOW_OPEN_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--db", str(tmp_path / "s.db"), *flags]) == 0
    assert len(ran) == 1
    open_on_purpose = Settings.from_env({"VPP_ALLOW_OPEN_ACCOUNTS": "1"})
    assert open_on_purpose.allow_open_accounts is True

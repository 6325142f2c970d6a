"""Bearer tokens: HTTP Basic login to an HS256 JWT, and verification of that JWT."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt
from connexion.security import BasicSecurityHandler, BearerSecurityHandler

from vpp_sandbox.mock_server.accounts import Accounts, Caller
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.lifecycle import format_time
from vpp_sandbox.mock_server.settings import Account, Settings

__all__ = ["ADMIN_KEY_EXTENSION", "ISSUER", "Authenticator", "security_map"]

ISSUER = "FlatPeakAPI"
ADMIN_KEY_EXTENSION = "x-sandbox-admin-key"
_VERIFIED_MAX = 4096
_LOGIN_HINT = "Get a token from GET /login with HTTP Basic: your account id and API key."


class Authenticator:
    """Checks API keys, issues tokens and verifies them; `clock` gives Unix seconds."""

    def __init__(
        self,
        settings: Settings,
        accounts: Accounts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = settings.jwt_secret
        self._ttl = settings.token_ttl
        # Without a registry (a test of tokens alone): the configured accounts only.
        self._accounts = accounts if accounts is not None else Accounts(settings.accounts)
        self._admin_key = settings.admin_key
        self._clock = clock
        # Tokens already verified, with their claims: a client sends the same token on every
        # request, and HMAC plus claim checks cost more than the rest of a retrieve's own work.
        self._verified: dict[str, dict[str, Any]] = {}

    # -- login -----------------------------------------------------------------------------

    def check_key(self, account_id: str, api_key: str) -> Account:
        """The account whose id and key match, or a 401 credentials_invalid."""
        found = self._accounts.find(account_id, api_key)
        if found is None:
            raise ApiError(
                "credentials_invalid",
                "The account id and API key do not match. Send HTTP Basic with your account id "
                "as the username and an API key (sk_test_… or sk_live_…) as the password.",
            )
        return found

    def issue(self, account: Account) -> dict[str, Any]:
        """The /login response body for an account's key."""
        iat = int(self._clock())
        claims = {
            "account_id": account.account_id,
            "live_mode": account.live_mode,
            "iss": ISSUER,
            "sub": account.account_id,
            "exp": iat + self._ttl,
            "nbf": iat,
            "iat": iat,
        }
        token = jwt.encode(claims, self._secret, algorithm="HS256")
        return {"bearer_token": token, "expires_in": self._ttl, "live_mode": account.live_mode}

    # -- bearer ----------------------------------------------------------------------------

    def verify(self, token: str) -> dict[str, Any]:
        """Token claims (`account_id`, `live_mode`, `sub`), or a 401 with the reason."""
        known = self._verified.get(token)
        if known is not None:
            # PyJWT's own time rule: valid from nbf, expired at exp (real time, as jwt.decode).
            # ... and the account is still there (one made on demand may have been deleted).
            if known["nbf"] <= time.time() < known["exp"] and self._accounts.exists(
                known["account_id"]
            ):
                return dict(known)
            del self._verified[token]  # expired or gone: the full check says which
        claims = self._verify(token)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = claims
        return dict(claims)

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["account_id", "live_mode", "exp", "nbf", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            expired_at = _expiry_of(token)
            when = f" at {expired_at}" if expired_at else ""
            raise ApiError(
                "token_expired", f"The bearer token expired{when}. {_LOGIN_HINT}"
            ) from None
        except jwt.PyJWTError:
            raise ApiError(
                "token_invalid",
                f"The bearer token is not valid (malformed, or not signed by this server). "
                f"{_LOGIN_HINT}",
            ) from None
        if (
            not isinstance(claims.get("account_id"), str)
            or not isinstance(claims.get("live_mode"), bool)
            or not self._accounts.exists(claims["account_id"])
        ):
            raise ApiError(
                "token_invalid",
                f"The bearer token does not name an account of this server (an account made "
                f"on demand may have been deleted). {_LOGIN_HINT}",
            )
        return claims

    def live_mode_of(self, headers: Mapping[str, str]) -> bool:
        """The mode of a request's valid bearer token; False without one (for error bodies)."""
        kind, _, value = (headers.get("authorization") or "").partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            return False
        try:
            return bool(self.verify(value.strip())["live_mode"])
        except ApiError:
            return False

    # -- connexion hooks ---------------------------------------------------------------------

    def basic(self, request: Any) -> dict[str, Any]:
        """Security function of the basicAuth scheme (GET /login)."""
        kind, _, value = (request.headers.get("authorization") or "").partition(" ")
        if not kind:
            raise ApiError(
                "authentication_required",
                "Send HTTP Basic credentials: your account id as the username and an API key "
                "as the password (curl -u ACCOUNT_ID:API_KEY).",
            )
        if kind.lower() != "basic":
            raise ApiError(
                "credentials_invalid",
                "GET /login takes HTTP Basic credentials (Authorization: Basic base64(account_id"
                ":api_key)), not a bearer token.",
            )
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ApiError(
                "credentials_invalid",
                "The Basic credentials are not base64 of ACCOUNT_ID:API_KEY in UTF-8.",
            ) from None
        account_id, sep, api_key = decoded.partition(":")
        if not sep:
            raise ApiError(
                "credentials_invalid",
                "The Basic credentials must be ACCOUNT_ID:API_KEY, separated by a colon.",
            )
        account = self.check_key(account_id, api_key)
        return {"sub": account.account_id, "account": account}

    def bearer(self, request: Any) -> dict[str, Any]:
        """Security function of the bearerAuth scheme (every VPP operation)."""
        kind, _, value = (request.headers.get("authorization") or "").partition(" ")
        if not kind:
            raise ApiError(
                "authentication_required",
                f"Send Authorization: Bearer <token>. {_LOGIN_HINT}",
            )
        if kind.lower() != "bearer" or not value.strip():
            raise ApiError(
                "token_invalid",
                f"The Authorization header must be 'Bearer <token>'. {_LOGIN_HINT}",
            )
        return self.verify(value.strip())

    def caller(self, request: Any) -> dict[str, Any]:
        """Security function of the adminKey scheme (the accounts endpoints): who is calling.

        The admin key; an account's bearer token; or, on a sandbox without an admin key,
        anyone who sends no credentials. Credentials that are sent are checked.
        """
        kind, _, value = (request.headers.get("authorization") or "").partition(" ")
        value = value.strip()
        if not kind:
            if self._admin_key is None:
                return {"sub": None, "caller": Caller()}
            raise ApiError(
                "authentication_required",
                "This sandbox is shared: send its admin key as Authorization: Bearer <admin key> "
                "(to delete an account, that account's own bearer token works too).",
            )
        if kind.lower() != "bearer" or not value:
            raise ApiError(
                "token_invalid",
                "The Authorization header must be 'Bearer <admin key>' or 'Bearer <token>' (a "
                f"token from GET /login). {_LOGIN_HINT}",
            )
        admin_key = self._admin_key
        if admin_key is not None and hmac.compare_digest(value.encode(), admin_key.encode()):
            return {"sub": "admin", "caller": Caller(admin=True)}
        if value.count(".") != 2:  # not a JWT: it was meant as the admin key
            raise ApiError(
                "admin_key_invalid",
                "The bearer value is not this sandbox's admin key. Check the key (set with "
                "--admin-key or VPP_ADMIN_KEY)."
                if admin_key is not None
                else "This sandbox has no admin key: leave the Authorization header out to "
                "create an account, or send an account's bearer token.",
            )
        claims = self.verify(value)
        return {"sub": claims["sub"], "caller": Caller(account_id=claims["account_id"])}


def _expiry_of(token: str) -> str | None:
    try:
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        return format_time(datetime.fromtimestamp(int(exp), tz=UTC))
    except Exception:
        return None


def security_map(authenticator: Authenticator) -> dict[str, type]:
    """Connexion security handlers whose functions are the authenticator's closures."""

    class Basic(BasicSecurityHandler):  # type: ignore[misc]
        def get_fn(self, security_scheme: Any, required_scopes: Any) -> Any:
            return authenticator.basic

    class Bearer(BearerSecurityHandler):  # type: ignore[misc]
        def get_fn(self, security_scheme: Any, required_scopes: Any) -> Any:
            # The control spec marks its admin-key scheme; every other bearer scheme is a JWT.
            if security_scheme.get(ADMIN_KEY_EXTENSION):
                return authenticator.caller
            return authenticator.bearer

    return {"basic": Basic, "bearer": Bearer}

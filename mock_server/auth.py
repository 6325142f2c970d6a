"""Bearer tokens: HTTP Basic login to an HS256 JWT, and verification of that JWT."""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jwt
from connexion.security import BasicSecurityHandler, BearerSecurityHandler

from vpp_sandbox.mock_server.accounts import Accounts
from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.lifecycle import format_time
from vpp_sandbox.mock_server.request import Caller, facts_of
from vpp_sandbox.mock_server.settings import Account, Settings

__all__ = ["ADMIN_KEY_EXTENSION", "ALGORITHM", "ISSUER", "LEEWAY", "Authenticator", "security_map"]

ISSUER = "FlatPeakAPI"
ADMIN_KEY_EXTENSION = "x-sandbox-admin-key"
ALGORITHM = "HS256"
# Seconds a token's `iat` may be ahead of this server's clock (another process's clock).
LEEWAY = 5
# The claims every token carries, with their JSON types (bool is not an int here).
_CLAIMS: dict[str, type] = {
    "account_id": str,
    "live_mode": bool,
    "iss": str,
    "sub": str,
    "exp": int,
    "nbf": int,
    "iat": int,
}
_VERIFIED_MAX = 4096
_LOGIN_HINT = "Get a token from GET /login with HTTP Basic: your account id and API key."


class Authenticator:
    """Checks API keys, issues tokens and verifies them; `clock` gives Unix seconds.

    The signing key is `settings.jwt_secret` (VPP_JWT_SECRET) when set, else `secret` (the data
    file's own random secret, `Store.signing_secret`), else a random one for this object alone.
    There is no default anyone could read in the source.
    """

    def __init__(
        self,
        settings: Settings,
        accounts: Accounts | None = None,
        *,
        secret: bytes | Callable[[], Awaitable[bytes]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._load: Callable[[], Awaitable[bytes]] | None = None
        self._secret = b""
        if settings.jwt_secret:
            self._secret = settings.jwt_secret.encode()
        elif isinstance(secret, bytes):
            self._secret = secret
        elif secret is not None:
            self._load = secret  # the store's, read once on first use (it never changes)
        else:
            self._secret = secrets.token_bytes(32)
        self._ttl = settings.token_ttl
        # Without a registry (a test of tokens alone): the configured accounts only.
        self._accounts = accounts if accounts is not None else Accounts(settings.accounts)
        self._admin_key = settings.admin_key
        self._clock = clock
        # Tokens already verified, with their claims: a client sends the same token on every
        # request, and HMAC plus claim checks cost more than the rest of a retrieve's own work.
        self._verified: dict[str, dict[str, Any]] = {}

    async def ready(self) -> None:
        """Read the signing secret from the store, once (before the first login or check)."""
        if self._load is not None:
            self._secret = await self._load()
            self._load = None

    # -- login -----------------------------------------------------------------------------

    async def check_key(self, account_id: str, api_key: str) -> Account:
        """The account whose id and key match, or a 401 credentials_invalid."""
        found = await self._accounts.find(account_id, api_key)
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
        with warnings.catch_warnings():
            # A short VPP_JWT_SECRET is the operator's choice; `serve` warns about it once.
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return {"bearer_token": token, "expires_in": self._ttl, "live_mode": account.live_mode}

    # -- bearer ----------------------------------------------------------------------------

    async def verify(self, token: str) -> dict[str, Any]:
        """Token claims (`account_id`, `live_mode`, `sub`), or a 401 with the reason.

        The signature and claims of a token are checked once (then remembered); whether its
        account and mode still open is asked every time (an account made on demand may have
        been deleted, by another process too).
        """
        known = self._verified.get(token)
        if known is None or not known["nbf"] <= self._clock() < known["exp"]:
            self._verified.pop(token, None)  # expired now: the full check says so
            known = self._verify(token)
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()
            self._verified[token] = known
        if not await self._accounts.opens(known["account_id"], known["live_mode"]):
            raise ApiError(
                "token_invalid",
                "The bearer token does not name an account and mode of this server (an account "
                f"made on demand may have been deleted). {_LOGIN_HINT}",
            )
        return dict(known)

    def _verify(self, token: str) -> dict[str, Any]:
        """Every check, strictly: only tokens exactly as this server issues them pass.

        HS256 only (no `none`, no other algorithm, no header fields beyond `alg` and `typ`), the
        signature with this server's secret, every claim present and of its type, `iss`, `sub`
        equal to `account_id`, a lifetime of exactly the TTL this server issues (`exp - iat`),
        `nbf == iat`, not issued in the future (beyond a few seconds of leeway), not expired,
        and a namespace one of the configured keys opens.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("malformed: not a JSON Web Token") from None
        if header.get("alg") != ALGORITHM or header.get("typ", "JWT") != "JWT" or (
            set(header) - {"alg", "typ"}
        ):
            raise _invalid("not signed by this server")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                claims: dict[str, Any] = jwt.decode(
                    token,
                    self._secret,
                    algorithms=[ALGORITHM],
                    issuer=ISSUER,
                    # Times are checked below, on this authenticator's clock.
                    options={
                        "require": list(_CLAIMS),
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                    },
                )
        except jwt.PyJWTError:
            raise _invalid("malformed, or not signed by this server") from None
        if any(type(claims.get(name)) is not kind for name, kind in _CLAIMS.items()):
            raise _invalid("a claim has the wrong type")
        if claims["sub"] != claims["account_id"]:
            raise _invalid("sub and account_id differ")
        iat, nbf, exp = claims["iat"], claims["nbf"], claims["exp"]
        if exp - iat != self._ttl or nbf != iat:
            raise _invalid(f"its lifetime is not the {self._ttl} s this server issues")
        now = self._clock()
        if iat > now + LEEWAY:
            raise _invalid("it was issued in the future")
        if now >= exp:
            expired_at = format_time(datetime.fromtimestamp(exp, tz=UTC))
            raise ApiError(
                "token_expired", f"The bearer token expired at {expired_at}. {_LOGIN_HINT}"
            )
        return claims

    # -- security functions (Connexion's security_map) --------------------------------------
    # The caller was identified once (`pipeline.Identify`): these only decide, per scheme.

    async def basic(self, request: Any) -> dict[str, Any]:
        """Security function of the basicAuth scheme (GET /login)."""
        await self.ready()
        caller = facts_of(request.scope).caller
        if not caller.scheme:
            raise ApiError(
                "authentication_required",
                "Send HTTP Basic credentials: your account id as the username and an API key "
                "as the password (curl -u ACCOUNT_ID:API_KEY).",
            )
        if caller.scheme != "basic":
            raise ApiError(
                "credentials_invalid",
                "GET /login takes HTTP Basic credentials (Authorization: Basic base64(account_id"
                ":api_key)), not a bearer token.",
            )
        try:
            decoded = base64.b64decode(caller.credentials, validate=True).decode("utf-8")
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
        account = await self.check_key(account_id, api_key)
        caller.account = account
        caller.login = Namespace(account.account_id, account.live_mode)
        return {"sub": account.account_id}

    async def bearer(self, request: Any) -> dict[str, Any]:
        """Security function of the bearerAuth scheme (every VPP operation)."""
        caller = facts_of(request.scope).caller
        if caller.claims is not None:
            return caller.claims
        if caller.problem is not None:
            raise caller.problem
        if not caller.scheme:
            raise ApiError(
                "authentication_required",
                f"Send Authorization: Bearer <token>. {_LOGIN_HINT}",
            )
        raise ApiError(
            "token_invalid",
            f"The Authorization header must be 'Bearer <token>'. {_LOGIN_HINT}",
        )

    async def caller(self, request: Any) -> dict[str, Any]:
        """Security function of the adminKey scheme (the accounts endpoints)."""
        return self.admin_caller(facts_of(request.scope).caller)

    def admin_caller(self, caller: Caller) -> dict[str, Any]:
        """Who may ask for accounts: the admin key; an account's bearer token; or, on a sandbox
        without an admin key, anyone who sends no credentials. Credentials that are sent are
        checked. The handlers ask it too: where the spec makes the scheme optional (no
        credentials at all), Connexion lets a request with wrong ones through to them."""
        if caller.admin:
            return {"sub": "admin"}
        if not caller.scheme:
            if self._admin_key is None:
                return {"sub": None}
            raise ApiError(
                "authentication_required",
                "This sandbox is shared: send its admin key as Authorization: Bearer <admin key> "
                "(to delete an account, that account's own bearer token works too).",
            )
        if caller.scheme != "bearer" or not caller.credentials:
            raise ApiError(
                "token_invalid",
                "The Authorization header must be 'Bearer <admin key>' or 'Bearer <token>' (a "
                f"token from GET /login). {_LOGIN_HINT}",
            )
        if caller.claims is not None:
            return caller.claims
        if caller.credentials.count(".") != 2:  # not a JWT: it was meant as the admin key
            raise ApiError(
                "admin_key_invalid",
                "The bearer value is not this sandbox's admin key. Check the key (set with "
                "--admin-key or VPP_ADMIN_KEY)."
                if self._admin_key is not None
                else "This sandbox has no admin key: leave the Authorization header out to "
                "create an account, or send an account's bearer token.",
            )
        raise caller.problem or _invalid("not signed by this server")


def _invalid(why: str) -> ApiError:
    return ApiError("token_invalid", f"The bearer token is not valid ({why}). {_LOGIN_HINT}")


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

"""The proxy's memory: the suite's Ledger, bounded, and each token's namespace, never forged.

The suite learns identities from the logins it makes; a proxy sees clients that logged in
before it started, or elsewhere. A bearer token's claims (`account_id`, `live_mode`) are
readable without the signing key, but anyone can write them: they name the namespace an
exchange is judged in only once the upstream has not refused the token (an answer other than
`401`), and a token the upstream refused speaks for nobody (rule 14 expects its `401`). A token
past its `exp` (by more than a minute of clock skew) counts as no token. Opaque tokens of other
implementations are known from what `GET /login` answered through the proxy.

The proxy forwards one namespace's requests one at a time (`namespace_of`): a token is its own
namespace, keyed by a hash of the whole token, until the upstream has accepted it (a `2xx` to
a participation operation, or the login that issued it); then it joins its account and mode's,
with the other tokens accepted for them. A forged token, whatever its claims, queues only
behind itself.

Memory is bounded: at most `max_participations` participations (the least recently seen is
forgotten first; a forgotten one is checked again as if new, so forgetting can only miss a
cross-request violation, never invent one) and `max_tokens` tokens known to be genuine, kept
as hashes (a token's size never counts).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

from vpp_sandbox.contract_tests.ledger import Identity, Ledger, Observation, Seen
from vpp_sandbox.contract_tests.object_checks import VPP_OPERATIONS
from vpp_sandbox.contract_tests.target import Exchange

__all__ = [
    "BoundedDict",
    "ProxyLedger",
    "TokenDict",
    "bearer_of",
    "claims_of",
    "identity_of_token",
    "token_key",
]

K = TypeVar("K")
V = TypeVar("V")

CLOCK_SKEW = 60.0  # seconds a token's exp/nbf may be off before the proxy believes them


class BoundedDict(OrderedDict[K, V]):
    """A dict of at most `limit` keys; writing a key makes it the newest, the oldest goes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = max(1, limit)
        self.evicted = 0

    def __setitem__(self, key: K, value: V) -> None:
        if key in self:
            self.move_to_end(key)
        super().__setitem__(key, value)
        while len(self) > self.limit:
            self.popitem(last=False)
            self.evicted += 1

    def touch(self, key: K) -> None:
        if key in self:
            self.move_to_end(key)


def token_key(token: str) -> str:
    """A token's key: the SHA-256 of all of it (its claims alone name nobody)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenDict(BoundedDict[str, Identity]):
    """Tokens known to be genuine and whom they speak for, kept by `token_key` (the Ledger's
    own code writes and reads them by the token itself)."""

    def __setitem__(self, token: str, identity: Identity) -> None:
        super().__setitem__(token_key(token), identity)

    def __getitem__(self, token: str) -> Identity:
        return super().__getitem__(token_key(token))

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and super().__contains__(token_key(token))

    def get(self, token: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(token_key(token), default)


def bearer_of(headers: Mapping[str, str]) -> str | None:
    """The bearer token of a request's headers, or None."""
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    if not auth.startswith("Bearer "):
        return None
    return auth[len("Bearer ") :].strip()


def claims_of(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, unverified; None for anything else."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def identity_of_token(token: str, now: float) -> Identity | None:
    """The namespace a JWT names, unless it is clearly expired or not yet valid."""
    claims = claims_of(token)
    if claims is None:
        return None
    account, live = claims.get("account_id"), claims.get("live_mode")
    if not isinstance(account, str) or not isinstance(live, bool):
        return None
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, int | float) and exp < now - CLOCK_SKEW:
        return None
    if isinstance(nbf, int | float) and nbf > now + CLOCK_SKEW:
        return None
    return Identity(account, live)


class ProxyLedger(Ledger):
    """A Ledger with bounded memory that knows a token's namespace without trusting it."""

    def __init__(
        self,
        max_participations: int = 5000,
        max_tokens: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.bounded_objects: BoundedDict[str, Seen] = BoundedDict(max_participations)
        self.bounded_tokens = TokenDict(max_tokens)
        self.objects = self.bounded_objects  # the Ledger's own code writes through these
        self.tokens = self.bounded_tokens
        self.clock = clock

    def identity_of(self, headers: Mapping[str, str]) -> Identity | None:
        """The namespace a token names (its claims, or the login that issued it)."""
        token = bearer_of(headers)
        if token is None:
            return None
        if claims_of(token) is not None:
            return identity_of_token(token, self.clock())
        return self.tokens.get(token)  # an opaque token: known only from a login we saw

    def identity_for(self, exchange: Exchange) -> Identity | None:
        identity = self.identity_of(exchange.headers)
        token = bearer_of(exchange.headers)
        if exchange.status == 401 and token is not None and token not in self.tokens:
            return None  # refused, never accepted: its claims speak for nobody
        return identity

    def namespace_of(self, headers: Mapping[str, str]) -> Hashable | None:
        """The queue a request waits in: its token's namespace once the upstream accepted the
        token, else the token's own; None without a token (nothing to keep in order)."""
        token = bearer_of(headers)
        if not token:
            return None
        known = self.tokens.get(token)
        return known if known is not None else token_key(token)

    def _learn(self, obs: Observation) -> None:
        super()._learn(obs)
        token = bearer_of(obs.exchange.headers)
        status = obs.exchange.status
        # Accepted: a participation operation needs a valid token, so a 2xx answer to one is
        # the upstream's word that this token speaks for the namespace its claims name.
        if obs.identity is not None and token and 200 <= status < 300 and (
            obs.operation in VPP_OPERATIONS
        ):
            self.tokens[token] = obs.identity

    def touch(self, ids: Iterable[str]) -> None:
        """Mark participations as just seen (they are forgotten last)."""
        with self._lock:
            for pid in ids:
                self.bounded_objects.touch(pid)

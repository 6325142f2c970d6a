"""The proxy's memory: the suite's Ledger, bounded, reading each token's namespace from its claims.

The suite learns identities from the logins it makes; a proxy sees clients that logged in
before it started, or elsewhere. A bearer token's claims (`account_id`, `live_mode`) are
readable without the signing key, so the proxy reads them, unverified: the server still
decides whether the token is valid, and a token past its `exp` (by more than a minute of
clock skew) counts as no token, so rule 14 expects a 401 for it. Opaque tokens of other
implementations fall back to what `GET /login` answered through the proxy.

Memory is bounded: at most `max_participations` participations (the least recently seen is
forgotten first; a forgotten one is checked again as if new, so forgetting can only miss a
cross-request violation, never invent one) and `max_tokens` tokens learned from logins.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from vpp_sandbox.contract_tests.ledger import Identity, Ledger, Seen

__all__ = ["BoundedDict", "ProxyLedger", "claims_of", "identity_of_token"]

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
    """A Ledger with bounded memory that knows a token's namespace from its claims."""

    def __init__(
        self,
        max_participations: int = 5000,
        max_tokens: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.bounded_objects: BoundedDict[str, Seen] = BoundedDict(max_participations)
        self.bounded_tokens: BoundedDict[str, Identity] = BoundedDict(max_tokens)
        self.objects = self.bounded_objects  # the Ledger's own code writes through these
        self.tokens = self.bounded_tokens
        self.clock = clock

    def identity_of(self, headers: Mapping[str, str]) -> Identity | None:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not auth.startswith("Bearer "):
            return None
        token = auth[len("Bearer ") :].strip()
        if claims_of(token) is not None:
            return identity_of_token(token, self.clock())
        return self.tokens.get(token)  # an opaque token: known only from a login we saw

    def touch(self, ids: Iterable[str]) -> None:
        """Mark participations as just seen (they are forgotten last)."""
        with self._lock:
            for pid in ids:
                self.bounded_objects.touch(pid)

"""The sandbox's one settings object, built at the edge from flags and `VPP_` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["DEFAULT_ACCOUNT", "Account", "Settings", "parse_account"]


@dataclass(frozen=True, slots=True)
class Account:
    """An account id and one API key; the key's prefix gives the mode."""

    account_id: str
    api_key: str

    @property
    def live_mode(self) -> bool:
        return self.api_key.startswith("sk_live_")


# The default sandbox account, documented in the README and printed at start-up.
DEFAULT_ACCOUNT_ID = "acc_661677911f2197045e6cf1b1"
DEFAULT_ACCOUNT = (
    Account(DEFAULT_ACCOUNT_ID, "sk_test_vppsandbox4f3c9a2b7d1e8f60"),
    Account(DEFAULT_ACCOUNT_ID, "sk_live_vppsandbox4f3c9a2b7d1e8f60"),
)


def parse_account(text: str) -> Account:
    """`ACCOUNT_ID:API_KEY` to an Account, with a message that says how to fix bad input."""
    account_id, sep, key = text.partition(":")
    if not sep or not account_id or not key:
        raise ValueError(f"{text!r} is not ACCOUNT_ID:API_KEY (e.g. acc_…:sk_test_…)")
    if not (key.startswith("sk_test_") or key.startswith("sk_live_")):
        raise ValueError(f"API key of {account_id} must start with sk_test_ or sk_live_")
    return Account(account_id, key)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    db: str = "vpp-sandbox.db"
    accounts: tuple[Account, ...] = DEFAULT_ACCOUNT
    world: str | None = None
    seed: int = 0
    size: int | None = None
    autopilot: bool = True
    jwt_secret: str = "vpp-sandbox-local-signing-secret"
    token_ttl: int = 3600
    max_body_bytes: int = 64 * 1024
    rate_limit: float | None = None
    log_level: str = "warning"
    # The request journal (mock_server/journal.py): entries kept per namespace (0: none), how
    # many namespaces (least recently heard from dropped first), one access-log line a request.
    journal_size: int = 100
    journal_namespaces: int = 256
    access_log: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `VPP_*` variables, then explicit overrides (CLI flags that were given)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if "VPP_HOST" in env:
            values["host"] = env["VPP_HOST"]
        if "VPP_PORT" in env:
            values["port"] = int(env["VPP_PORT"])
        if "VPP_DB" in env:
            values["db"] = env["VPP_DB"]
        if env.get("VPP_ACCOUNTS"):
            values["accounts"] = tuple(
                parse_account(a.strip()) for a in env["VPP_ACCOUNTS"].split(",") if a.strip()
            )
        if env.get("VPP_WORLD"):
            values["world"] = env["VPP_WORLD"]
        if "VPP_SEED" in env:
            values["seed"] = int(env["VPP_SEED"])
        if env.get("VPP_SIZE"):
            values["size"] = int(env["VPP_SIZE"])
        if "VPP_AUTOPILOT" in env:
            off = ("0", "false", "no", "off")
            values["autopilot"] = env["VPP_AUTOPILOT"].strip().lower() not in off
        if env.get("VPP_JWT_SECRET"):
            values["jwt_secret"] = env["VPP_JWT_SECRET"]
        if "VPP_MAX_BODY_BYTES" in env:
            values["max_body_bytes"] = int(env["VPP_MAX_BODY_BYTES"])
        if env.get("VPP_RATE_LIMIT"):
            values["rate_limit"] = float(env["VPP_RATE_LIMIT"])
        if "VPP_JOURNAL_SIZE" in env:
            values["journal_size"] = int(env["VPP_JOURNAL_SIZE"])
        if env.get("VPP_ACCESS_LOG", "").strip():
            values["access_log"] = env["VPP_ACCESS_LOG"].strip().lower() not in (
                "0", "false", "no", "off"
            )
        if env.get("VPP_LOG_LEVEL"):
            values["log_level"] = env["VPP_LOG_LEVEL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

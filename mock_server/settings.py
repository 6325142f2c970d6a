"""The sandbox's one settings object, built at the edge from flags and `VPP_` variables."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = [
    "DEFAULT_ACCOUNT",
    "HTTP_IMPLEMENTATIONS",
    "LIMITS",
    "Account",
    "Settings",
    "parse_account",
    "parse_http",
    "parse_limit",
]


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


HTTP_IMPLEMENTATIONS = ("auto", "httptools", "h11")

# The numeric HTTP limits: each a flag (--max-header-bytes) and a variable (VPP_MAX_HEADER_BYTES).
LIMITS: dict[str, type] = {
    "max_body_bytes": int,
    "max_header_bytes": int,
    "max_headers": int,
    "header_timeout": float,
    "body_timeout": float,
    "idle_timeout": float,
    "keep_alive_timeout": float,
    "max_connections": int,
}


def _positive(name: str, text: str, kind: type) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a {kind.__name__}") from None
    if not value > 0:
        raise ValueError(f"{name}={text!r} must be greater than 0")
    return value


def parse_limit(name: str, text: str) -> int | float:
    """A numeric HTTP limit (`max_header_bytes`, `body_timeout`, …) from text, or ValueError."""
    value: int | float = _positive(name, text, LIMITS[name])
    return value


def parse_http(text: str) -> str:
    value = text.strip().lower()
    if value not in HTTP_IMPLEMENTATIONS:
        raise ValueError(f"{text!r} is not one of {', '.join(HTTP_IMPLEMENTATIONS)}")
    return value


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
    # None: the data file's own random secret (Store.signing_secret); VPP_JWT_SECRET overrides.
    jwt_secret: str | None = None
    token_ttl: int = 3600
    rate_limit: float | None = None
    log_level: str = "warning"
    workers: int = 1
    # HTTP limits a public server needs (mock_server/compat.py and mock_server/intake.py).
    http: str = "auto"  # uvicorn's parser: auto (httptools when installed), httptools or h11
    max_body_bytes: int = 64 * 1024  # 413 past it
    max_header_bytes: int = 32 * 1024  # request line and header fields; 431 past it
    max_headers: int = 100  # header fields; 431 past it
    header_timeout: float = 10.0  # first byte of a request to the end of its head; 408
    body_timeout: float = 10.0  # end of the head to the end of the body; 408
    idle_timeout: float = 10.0  # a new connection that sends no request is closed
    keep_alive_timeout: float = 5.0  # an idle connection between requests is closed
    max_connections: int = 1000  # open connections; more are answered 503 and closed
    # Accounts on demand (POST /_sandbox/accounts): without an admin key anyone may create one
    # (a local sandbox); with one, creating and deleting them needs it (a shared sandbox).
    admin_key: str | None = None
    max_accounts: int = 1000
    # Participations one namespace (an account's test or live mode) may hold: creates past it
    # are a 409 namespace_full, so one tenant cannot fill the disk (a world load replaces).
    max_participations: int = 100_000
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
        for name, kind in LIMITS.items():
            variable = "VPP_" + name.upper()
            if env.get(variable):
                values[name] = _positive(variable, env[variable], kind)
        if env.get("VPP_HTTP"):
            values["http"] = parse_http(env["VPP_HTTP"])
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
        if env.get("VPP_WORKERS"):
            values["workers"] = int(env["VPP_WORKERS"])
        if env.get("VPP_ADMIN_KEY"):
            values["admin_key"] = env["VPP_ADMIN_KEY"]
        if env.get("VPP_MAX_ACCOUNTS"):
            values["max_accounts"] = int(env["VPP_MAX_ACCOUNTS"])
        if env.get("VPP_MAX_PARTICIPATIONS"):
            values["max_participations"] = int(env["VPP_MAX_PARTICIPATIONS"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    # -- handing the settings to `serve --workers N` processes ---------------------------------

    def export_for_workers(self) -> None:
        """Put these settings where `for_worker` finds them (worker processes inherit it)."""
        values = asdict(self)
        values["accounts"] = [[a["account_id"], a["api_key"]] for a in values["accounts"]]
        os.environ[_WORKER_SETTINGS] = json.dumps(values)

    @classmethod
    def for_worker(cls) -> Settings:
        """The settings the `serve` process exported for its workers."""
        values = json.loads(os.environ[_WORKER_SETTINGS])
        values["accounts"] = tuple(Account(a, k) for a, k in values["accounts"])
        return cls(**values)


_WORKER_SETTINGS = "VPP_SANDBOX_WORKER_SETTINGS"

"""The sandbox's one settings object, built at the edge from flags and `VPP_` variables."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from vpp_sandbox import options
from vpp_sandbox.options import (
    Option,
    choice,
    positive_float,
    positive_int,
    setting,
    whole,
)

__all__ = [
    "DEFAULT_ACCOUNT",
    "HTTP_IMPLEMENTATIONS",
    "Account",
    "Settings",
    "parse_account",
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


def port_number(text: str) -> int:
    number = whole(text)
    if not 0 <= number <= 65535:
        raise ValueError(f"{text!r} is not a port (0 to 65535; 0 picks a free one)")
    return number


def journal_size(text: str) -> int:
    number = whole(text)
    if number < 0:
        raise ValueError(f"{text!r} must be 0 (keep nothing) or more")
    return number


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of `vpp-sandbox serve`, each declared once with its flag and `VPP_`
    variable (`vpp_sandbox.options`): the flags, the variables and the README's table come
    from here."""

    host: str = setting(
        "127.0.0.1",
        option=Option("--host", "VPP_HOST", "interface to listen on; beyond loopback an admin "
                      "key is needed (or `--allow-open-accounts`), and weak or published "
                      "credentials print a warning"),
    )
    port: int = setting(
        8080, option=Option("--port", "VPP_PORT", "port to listen on", port_number)
    )
    db: str = setting(
        "vpp-sandbox.db",
        option=Option("--db", "VPP_DB", "a SQLite file, `:memory:`, or a `postgresql://` URL "
                      "shared by several servers"),
    )
    workers: int = setting(
        1,
        option=Option("--workers", "VPP_WORKERS", "server processes sharing the store (a file "
                      "or a PostgreSQL URL, not `:memory:`)", positive_int, "N"),
    )
    accounts: tuple[Account, ...] = setting(
        DEFAULT_ACCOUNT,
        option=Option("--account", "VPP_ACCOUNTS", "an account and key that can log in "
                      "(repeatable; sk_test_ or sk_live_ keys)", parse_account, "ID:KEY",
                      repeat=True, default_text="the default account"),
    )
    world: str | None = setting(
        None,
        option=Option("--world", "VPP_WORLD", "a world (demo, edge-cases, load, or a JSON file "
                      "from `vpp-sandbox fixtures`) loaded into an empty store; its accounts can "
                      "log in too", metavar="NAME|FILE.json"),
    )
    seed: int = setting(0, option=Option("--seed", "VPP_SEED", "seed of the world", whole))
    size: int | None = setting(
        None,
        option=Option("--size", "VPP_SIZE", "participations of the load world", positive_int,
                      default_text="per world"),
    )
    autopilot: bool = setting(
        True,
        option=Option("--no-autopilot", "VPP_AUTOPILOT", "participations move only through "
                      "the API (VPP_AUTOPILOT=0)", switch=False, default_text="on"),
    )
    rate_limit: float | None = setting(
        None,
        option=Option("--rate-limit", "VPP_RATE_LIMIT", "answer `429 rate_limited` (with "
                      "Retry-After) past this many requests a second per account and mode",
                      positive_float, "PER_SECOND", default_text="no limit"),
    )
    # None: the data file's own random secret (Store.signing_secret); VPP_JWT_SECRET overrides.
    jwt_secret: str | None = setting(
        None,
        option=Option(None, "VPP_JWT_SECRET", "HS256 signing secret of bearer tokens (32+ "
                      "bytes)", default_text="the data file's own random secret", secret=True),
    )
    token_ttl: int = 3600
    log_level: str = setting(
        "warning",
        option=Option("--log-level", "VPP_LOG_LEVEL", "uvicorn's log level",
                      choice("critical", "error", "warning", "info", "debug", "trace")),
    )
    # HTTP limits a public server needs (mock_server/compat.py and mock_server/intake.py).
    http: str = setting(
        "auto",
        option=Option("--http", "VPP_HTTP", "HTTP parser: `httptools` when installed, else "
                      "`h11`", choice(*HTTP_IMPLEMENTATIONS)),
    )
    max_body_bytes: int = setting(
        64 * 1024,
        option=Option("--max-body-bytes", "VPP_MAX_BODY_BYTES", "`413 request_too_large` past "
                      "this body size", positive_int, "BYTES"),
    )
    max_header_bytes: int = setting(
        32 * 1024,
        option=Option("--max-header-bytes", "VPP_MAX_HEADER_BYTES", "`431 "
                      "request_header_too_large` past this size of request line and headers",
                      positive_int, "BYTES"),
    )
    max_headers: int = setting(
        100,
        option=Option("--max-headers", "VPP_MAX_HEADERS", "`431 request_header_too_large` past "
                      "this many header fields", positive_int, "N"),
    )
    header_timeout: float = setting(
        10.0,
        option=Option("--header-timeout", "VPP_HEADER_TIMEOUT", "`408 request_timeout` when a "
                      "request's head takes longer to arrive", positive_float, "SECONDS"),
    )
    body_timeout: float = setting(
        10.0,
        option=Option("--body-timeout", "VPP_BODY_TIMEOUT", "`408 request_timeout` when a body "
                      "takes longer to arrive after its head", positive_float, "SECONDS"),
    )
    idle_timeout: float = setting(
        10.0,
        option=Option("--idle-timeout", "VPP_IDLE_TIMEOUT", "close a new connection that sends "
                      "nothing this long", positive_float, "SECONDS"),
    )
    keep_alive_timeout: float = setting(
        5.0,
        option=Option("--keep-alive-timeout", "VPP_KEEP_ALIVE_TIMEOUT", "close a connection "
                      "idle this long between requests", positive_float, "SECONDS"),
    )
    max_connections: int = setting(
        1000,
        option=Option("--max-connections", "VPP_MAX_CONNECTIONS", "answer `503 server_busy` "
                      "(with Retry-After) and close connections beyond this many", positive_int,
                      "N"),
    )
    # The store failing (a SQLite file another process keeps locked, PostgreSQL down or stuck)
    # is a quick 503, never a request that hangs: every wait for it is bounded.
    store_timeout: float = setting(
        3.0,
        option=Option("--store-timeout", "VPP_STORE_TIMEOUT", "`503 store_unavailable` (with "
                      "Retry-After) when the store does not answer this long: a SQLite file "
                      "locked by another process, a PostgreSQL server down or stuck",
                      positive_float, "SECONDS"),
    )
    wal_bytes: int = setting(
        64 * 1024 * 1024,
        option=Option("--wal-bytes", "VPP_WAL_BYTES", "SQLite: past this size the write-ahead "
                      "log is checkpointed in full and truncated (writers wait meanwhile)",
                      positive_int, "BYTES"),
    )
    # Accounts on demand (POST /_sandbox/accounts): without an admin key anyone may create one
    # (a local sandbox); with one, creating and deleting them needs it (a shared sandbox).
    admin_key: str | None = setting(
        None,
        option=Option("--admin-key", "VPP_ADMIN_KEY", "a shared sandbox: creating and deleting "
                      "accounts on demand needs `Authorization: Bearer KEY`, a key of 16 or more "
                      "characters (the variable keeps the key out of the process list)",
                      metavar="KEY", default_text="anyone may create", secret=True,
                      empty_is_given=True),
    )
    allow_open_accounts: bool = setting(
        False,
        option=Option("--allow-open-accounts", "VPP_ALLOW_OPEN_ACCOUNTS", "listen beyond "
                      "loopback without an admin key: anyone who reaches the port may create "
                      "accounts", switch=True, default_text="off"),
    )
    max_accounts: int = setting(
        1000,
        option=Option("--max-accounts", "VPP_MAX_ACCOUNTS", "accounts made on demand the "
                      "sandbox keeps at most", positive_int, "N"),
    )
    # World loads built at once on this machine, across its server processes (slots are rows
    # of the store); None: one per CPU core (mock_server/admission.py).
    max_world_builders: int | None = setting(
        None,
        option=Option("--max-world-builders", "VPP_MAX_WORLD_BUILDERS", "world loads built at "
                      "once on this machine, by all its server processes; more wait a few "
                      "seconds, then `503 server_busy`", positive_int, "N",
                      default_text="one per CPU core"),
    )
    # Participations one namespace (an account's test or live mode) may hold: creates past it
    # are a 409 namespace_full, so one tenant cannot fill the disk (a world load replaces).
    max_participations: int = setting(
        100_000,
        option=Option("--max-participations", "VPP_MAX_PARTICIPATIONS", "participations in "
                      "one account's test or live mode; a create past it is `409 "
                      "namespace_full`", positive_int, "N"),
    )
    # The request journal (mock_server/journal.py), per process: entries kept per namespace
    # (0: none) and the bytes it may hold in all (past them the namespace holding the most
    # gives up its oldest entry first); one access-log line a request.
    journal_size: int = setting(
        100,
        option=Option("--journal-size", "VPP_JOURNAL_SIZE", "requests the journal keeps per "
                      "account and mode (0: none)", journal_size, "N"),
    )
    journal_bytes: int = setting(
        16 * 1024 * 1024,
        option=Option("--journal-bytes", "VPP_JOURNAL_BYTES", "memory the journal of each "
                      "server process may hold; past it the account and mode holding the most "
                      "give up their oldest requests first", positive_int, "BYTES"),
    )
    access_log: bool = setting(
        False,
        option=Option("--access-log", "VPP_ACCESS_LOG", "print one line per request: time, "
                      "namespace, request, status, latency, request id and the error answered",
                      switch=True, default_text="off"),
    )
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `VPP_*` variables, then explicit overrides (CLI flags that were given).

        A bad variable is a ValueError naming it and saying what it must be.
        """
        values = options.from_env(cls, os.environ if environ is None else environ)
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

"""`vpp-sandbox serve`: run the app under uvicorn (one worker, no reload) and say how to use it."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import warnings
from collections.abc import Iterable
from typing import Any, TextIO

from starlette.types import ASGIApp

from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Account, Settings
from vpp_sandbox.mock_server.store import Store, StoreUnavailable

__all__ = [
    "banner",
    "build",
    "exposure_problem",
    "exposure_warning",
    "port_problem",
    "serve",
    "worker_app",
]

# The secret part of an API key (after sk_test_ / sk_live_) shorter than this is guessable.
MIN_KEY_SECRET = 16
# An admin key creates and deletes every account made on demand: no shorter than this.
MIN_ADMIN_KEY = 16
_MAKE_A_KEY = "python3 -c 'import secrets; print(secrets.token_hex(16))'"
# RFC 7518 3.2: an HS256 key of at least 256 bits.
MIN_JWT_SECRET_BYTES = 32
_OLD_DEFAULT_JWT_SECRET = "vpp-sandbox-local-signing-secret"  # in the source until issue 10


def banner(settings: Settings, where: str | None = None) -> str:
    """What the server prints at start-up: where it is and which credentials it accepts."""
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        "VPP Sandbox: a stateful sandbox of the Flatpeak VPP participations API",
        f"  Base URL:    {base}",
        f"  Swagger UI:  {base}/ui/",
        f"  Spec:        {base}/openapi.json",
        f"  Data:        {where or settings.db}"
        + (f" · {settings.workers} worker processes" if settings.workers > 1 else ""),
        f"  Sandbox:     {base}/_sandbox/clock (time, autopilot, reset, worlds; "
        f"UI at {base}/_sandbox/ui/)",
        "  Accounts (GET /login with HTTP Basic ACCOUNT_ID:API_KEY):",
    ]
    for account in settings.accounts:
        mode = "live" if account.live_mode else "test"
        lines.append(f"    {account.account_id}  {mode} key  {account.api_key}")
    who = (
        "needs the admin key (--admin-key)"
        if settings.admin_key is not None
        else "open to anyone: no credentials"
    )
    lines.append(f"  On demand:   POST {base}/_sandbox/accounts makes a throwaway account ({who})")
    first = settings.accounts[0]
    lines.append(f"  Try:         curl -u {first.account_id}:{first.api_key} {base}/login")
    return "\n".join(lines)


def port_problem(host: str, port: int) -> str | None:
    """Why the server cannot listen on `host:port` (another process has it), or None.

    Asked before anything is printed or loaded: a banner whose `curl` line reaches another
    process helps nobody. uvicorn binds the same way (SO_REUSEADDR), so this agrees with it.
    """
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}: {exc.strerror}; give --host an address of this machine"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return (
                f"port {port} on {host} is in use ({exc.strerror}): another vpp-sandbox, or "
                "another server, listens there. Stop it, or choose another port with --port "
                "or VPP_PORT (0 picks a free one)."
            )
    return None


def is_loopback(host: str) -> bool:
    """True when `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def exposure_problem(settings: Settings) -> str | None:
    """Why `serve` refuses to start with these settings' exposure, or None.

    An admin key anyone could guess (or an empty VPP_ADMIN_KEY, which once meant "no key") is
    refused wherever the server listens; beyond loopback, a server without an admin key would
    let anyone who reaches the port make accounts, so it needs `--allow-open-accounts`.
    """
    key = settings.admin_key
    if key is not None and len(key) < MIN_ADMIN_KEY:
        what = "is empty" if not key else f"has only {len(key)} characters"
        return (
            f"the admin key (--admin-key, VPP_ADMIN_KEY) {what}: whoever guesses it may create "
            f"and delete every account made on demand. Give it {MIN_ADMIN_KEY} or more random "
            f"characters (e.g. `{_MAKE_A_KEY}`), or unset VPP_ADMIN_KEY for a sandbox on "
            "loopback that anyone on this machine may use."
        )
    if key is None and not settings.allow_open_accounts and not is_loopback(settings.host):
        return (
            f"--host {settings.host} is reachable from other machines, and without an admin key "
            "anyone who reaches the port may create accounts on demand. Give an admin key "
            f"(--admin-key or VPP_ADMIN_KEY, e.g. `{_MAKE_A_KEY}`), listen on --host 127.0.0.1, "
            "or pass --allow-open-accounts (VPP_ALLOW_OPEN_ACCOUNTS=1) if that is what you want."
        )
    return None


def exposure_warning(settings: Settings, published: Iterable[Account] = ()) -> str | None:
    """The start-up warning for a server reachable beyond this machine with weak credentials.

    Weak: the default account's documented keys, accounts of a seeded world (`published`:
    anyone can generate the same world and read its keys), keys whose secret part is short, and
    a VPP_JWT_SECRET shorter than 32 bytes (or the old default). None when the server listens
    on loopback only, or when every credential is strong.
    """
    if is_loopback(settings.host):
        return None
    published = set(published)
    weak: list[str] = []
    for account in settings.accounts:
        mode = "live" if account.live_mode else "test"
        secret = account.api_key.removeprefix("sk_test_").removeprefix("sk_live_")
        if account in DEFAULT_ACCOUNT:
            why = "the default account's key, published in the README"
        elif account in published:
            why = "a seeded world's key: anyone can generate the same world and read it"
        elif len(secret) < MIN_KEY_SECRET:
            why = f"only {len(secret)} characters after the prefix: guessable"
        else:
            continue
        weak.append(f"{account.account_id} {mode} key {account.api_key[:12]}…: {why}")
    jwt_secret = settings.jwt_secret
    if jwt_secret is not None and (
        jwt_secret == _OLD_DEFAULT_JWT_SECRET
        or len(jwt_secret.encode()) < MIN_JWT_SECRET_BYTES
    ):
        weak.append(
            f"VPP_JWT_SECRET has {len(jwt_secret.encode())} bytes (or is a published default): "
            "whoever guesses it can sign tokens for every account"
        )
    if not weak:
        return None
    lines = [
        f"WARNING: vpp-sandbox listens on {settings.host}:{settings.port}, reachable from other "
        "machines, with credentials anyone can find:",
        *(f"  - {item}" for item in weak),
        "Anyone who can reach this port can read, change and reset these accounts' data.",
        "Fix: --account ACCOUNT_ID:API_KEY with long random keys (sk_test_ and sk_live_ "
        "followed by e.g. `python3 -c 'import secrets; print(secrets.token_hex(16))'`), unset "
        "VPP_JWT_SECRET (the data file keeps its own random secret) or give it 32+ random bytes, "
        "or listen on --host 127.0.0.1.",
    ]
    width = max(len(line) for line in lines)
    rule = "!" * min(width, 100)
    return "\n".join([rule, *lines, rule])


def build(settings: Settings, store: Store | None = None) -> ASGIApp:
    """The served app (one per worker process), on a store of its own (or `store`), which it
    closes at shutdown."""
    from vpp_sandbox.mock_server.app import create_app

    return create_app(settings, store, owns_store=True)


def worker_app() -> ASGIApp:
    """uvicorn's factory in each worker process of `serve --workers N`."""
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    return build(Settings.for_worker())


async def _prepare(settings: Settings) -> tuple[Settings, str, str, Store | None]:
    """Load `--world` once, before any worker starts: (settings with its accounts, note, where,
    and the store itself when it is `:memory:`: it exists in this process only, so the server
    must serve that very store, or what was loaded is gone)."""
    from vpp_sandbox.mock_server.catalog import Catalog
    from vpp_sandbox.mock_server.clock import SandboxClock
    from vpp_sandbox.mock_server.stores import open_store
    from vpp_sandbox.mock_server.worlds import prepare

    store = open_store(settings.db, settings)
    keep = settings.db == ":memory:"
    try:
        settings, note = await prepare(settings, store, SandboxClock(store), Catalog(store))
        return settings, note, store.describe(), store if keep else None
    finally:
        if not keep:
            await store.close()


def serve(settings: Settings, out: TextIO | None = None) -> int:
    """Serve until interrupted; returns the process exit code."""
    # Connexion imports starlette's test client, which warns about httpx on every start.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import uvicorn

    from vpp_sandbox.mock_server.compat import CompatError, Limits, check, protocol_class

    out = out or sys.stdout
    if settings.workers > 1 and settings.db == ":memory:":
        print(
            "vpp-sandbox serve: --workers needs a shared store; give --db a file or a "
            "postgresql:// URL (each worker would have its own :memory: store).",
            file=sys.stderr,
        )
        return 2
    try:
        http = check(settings.http)  # what the connection limits are built on, before anything
    except CompatError as exc:
        print(f"vpp-sandbox serve: {exc}", file=sys.stderr)
        return 2
    refused = exposure_problem(settings)
    if refused is not None:
        print(f"vpp-sandbox serve: {refused}", file=sys.stderr)
        return 2
    busy = port_problem(settings.host, settings.port)
    if busy is not None:
        print(f"vpp-sandbox serve: {busy}", file=sys.stderr)
        return 2
    given = set(settings.accounts)
    try:
        settings, note, where, kept = asyncio.run(_prepare(settings))
    except (ValueError, StoreUnavailable) as exc:
        print(f"vpp-sandbox serve: {exc}", file=sys.stderr)
        return 2
    if settings.world:
        from vpp_sandbox.mock_server.worlds import release_memory

        release_memory()
    print(banner(settings, where), file=out, flush=True)
    if note:
        print(f"  {note}", file=out, flush=True)
    if not settings.autopilot:
        print("  Autopilot:   off (--no-autopilot): participations move only through the API",
              file=out, flush=True)
    print(
        f"  HTTP:        {http}; heads up to {settings.max_header_bytes} "
        f"bytes in {settings.header_timeout:g} s, bodies up to {settings.max_body_bytes} bytes "
        f"in {settings.body_timeout:g} s, {settings.max_connections} connections",
        file=out,
        flush=True,
    )
    world_accounts = [a for a in settings.accounts if a not in given]
    warning = exposure_warning(settings, published=world_accounts)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "reload": False,
        "log_level": settings.log_level,
        # uvicorn picks uvloop when it is installed (`vpp-sandbox[fast]`), else asyncio; the
        # HTTP parser is httptools when installed, else h11 (or --http), with the limits of
        # mock_server/compat.py. No access log line per request (VPP_LOG_LEVEL=info still
        # logs the rest).
        "loop": "auto",
        "http": protocol_class(Limits.of(settings))
        if settings.workers == 1
        else "vpp_sandbox.mock_server.compat:WorkerProtocol",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "access_log": False,
        "proxy_headers": False,  # a local sandbox: no proxy in front to believe
    }
    if settings.workers > 1:
        settings.export_for_workers()
        uvicorn.run(
            f"{__name__}:worker_app", factory=True, workers=settings.workers, **common
        )
    else:
        uvicorn.run(build(settings, kept), workers=1, **common)
    return 0

"""`vpp-sandbox serve`: run the app under uvicorn (one worker, no reload) and say how to use it."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import ipaddress
import sys
import warnings
from collections.abc import Iterable
from typing import TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Account, Settings

__all__ = ["banner", "exposure_warning", "serve"]

# The secret part of an API key (after sk_test_ / sk_live_) shorter than this is guessable.
MIN_KEY_SECRET = 16
# RFC 7518 3.2: an HS256 key of at least 256 bits.
MIN_JWT_SECRET_BYTES = 32
_OLD_DEFAULT_JWT_SECRET = "vpp-sandbox-local-signing-secret"  # in the source until issue 10


def banner(settings: Settings) -> str:
    """What the server prints at start-up: where it is and which credentials it accepts."""
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        "VPP Sandbox: a stateful sandbox of the Flatpeak VPP participations API",
        f"  Base URL:    {base}",
        f"  Swagger UI:  {base}/ui/",
        f"  Spec:        {base}/openapi.json",
        f"  Data:        {settings.db}",
        f"  Sandbox:     {base}/_sandbox/clock (time, autopilot, reset, worlds; "
        f"UI at {base}/_sandbox/ui/)",
        "  Accounts (GET /login with HTTP Basic ACCOUNT_ID:API_KEY):",
    ]
    for account in settings.accounts:
        mode = "live" if account.live_mode else "test"
        lines.append(f"    {account.account_id}  {mode} key  {account.api_key}")
    first = settings.accounts[0]
    lines.append(f"  Try:         curl -u {first.account_id}:{first.api_key} {base}/login")
    return "\n".join(lines)


def is_loopback(host: str) -> bool:
    """True when `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


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


def _release_memory() -> None:
    """Hand the heap a loaded world used back to the system (100,000: about 480 -> 255 MB).

    The world's objects are garbage once it is in SQLite, but glibc keeps the freed heap;
    malloc_trim returns it. Elsewhere (no glibc) this only collects.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class FreezeAfterStartup:
    """Moves everything alive once the app has started out of the garbage collector's sight.

    The spec, the compiled validators and Connexion's operations are tens of thousands of
    objects that live as long as the process; every full collection walked all of them, a
    pause of about 27 ms that every request in flight waited for (list p99 43 ms, p50 12 ms).
    After `gc.freeze()` a full collection walks only what requests made (under 1 ms).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        await self.app(scope, receive, send_)


def serve(settings: Settings, out: TextIO | None = None) -> int:
    """Serve until interrupted; returns the process exit code."""
    # Connexion imports starlette's test client, which warns about httpx on every start.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import uvicorn

    from vpp_sandbox.mock_server.app import create_app
    from vpp_sandbox.mock_server.catalog import Catalog
    from vpp_sandbox.mock_server.clock import SandboxClock
    from vpp_sandbox.mock_server.protocol import implementation, protocol_class
    from vpp_sandbox.mock_server.store import Store
    from vpp_sandbox.mock_server.worlds import prepare

    out = out or sys.stdout
    store = Store(settings.db)
    clock = SandboxClock(store)
    catalog = Catalog()
    given = set(settings.accounts)
    try:
        settings, note = prepare(settings, store, clock, catalog)
    except ValueError as exc:
        print(f"vpp-sandbox serve: {exc}", file=sys.stderr)
        store.close()
        return 2
    if settings.world:
        _release_memory()
    app = create_app(settings, store, clock=clock, catalog=catalog)
    print(banner(settings), file=out, flush=True)
    if note:
        print(f"  {note}", file=out, flush=True)
    if not settings.autopilot:
        print("  Autopilot:   off (--no-autopilot): participations move only through the API",
              file=out, flush=True)
    print(
        f"  HTTP:        {implementation(settings)}; heads up to {settings.max_header_bytes} "
        f"bytes in {settings.header_timeout:g} s, bodies up to {settings.max_body_bytes} bytes "
        f"in {settings.body_timeout:g} s, {settings.max_connections} connections",
        file=out,
        flush=True,
    )
    world_accounts = [a for a in settings.accounts if a not in given]
    warning = exposure_warning(settings, published=world_accounts)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:
        uvicorn.run(
            FreezeAfterStartup(app),
            host=settings.host,
            port=settings.port,
            workers=1,
            reload=False,
            log_level=settings.log_level,
            # uvicorn picks uvloop when it is installed (`vpp-sandbox[fast]`), else asyncio;
            # the HTTP parser is httptools when installed, else h11 (or --http), with the
            # limits of mock_server/protocol.py. No access log line per request
            # (VPP_LOG_LEVEL=info still logs the rest).
            loop="auto",
            http=protocol_class(settings),
            h11_max_incomplete_event_size=settings.max_header_bytes,
            # Typed int, used as call_later's delay: a float works.
            timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
            access_log=False,
            proxy_headers=False,  # a local sandbox: no proxy in front to believe
        )
    finally:
        store.close()
    return 0

"""`vpp-sandbox serve`: run the app under uvicorn (one worker, no reload) and say how to use it."""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.store import Store, StoreUnavailable

__all__ = ["Lifespan", "banner", "build", "serve", "worker_app"]


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
    first = settings.accounts[0]
    lines.append(f"  Try:         curl -u {first.account_id}:{first.api_key} {base}/login")
    return "\n".join(lines)


class Lifespan:
    """Start-up and shutdown around the app: freeze the heap once started, close the store.

    The spec, the compiled validators and Connexion's operations are tens of thousands of
    objects that live as long as the process; every full collection walked all of them, a
    pause of about 27 ms that every request in flight waited for (list p99 43 ms, p50 12 ms).
    After `gc.freeze()` a full collection walks only what requests made (under 1 ms).
    """

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.store.close()
            await send(message)

        await self.app(scope, receive, send_)


def build(settings: Settings) -> ASGIApp:
    """The served app (one per worker process), on a store of its own."""
    from vpp_sandbox.mock_server.app import create_app
    from vpp_sandbox.mock_server.stores import open_store

    store = open_store(settings.db)
    return Lifespan(create_app(settings, store), store)


def worker_app() -> ASGIApp:
    """uvicorn's factory in each worker process of `serve --workers N`."""
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    return build(Settings.for_worker())


async def _prepare(settings: Settings) -> tuple[Settings, str, str]:
    """Load `--world` once, before any worker starts: (settings with its accounts, note, where)."""
    from vpp_sandbox.mock_server.catalog import Catalog
    from vpp_sandbox.mock_server.clock import SandboxClock
    from vpp_sandbox.mock_server.stores import open_store
    from vpp_sandbox.mock_server.worlds import prepare

    store = open_store(settings.db)
    try:
        settings, note = await prepare(settings, store, SandboxClock(store), Catalog(store))
        return settings, note, store.describe()
    finally:
        await store.close()


def serve(settings: Settings, out: TextIO | None = None) -> int:
    """Serve until interrupted; returns the process exit code."""
    # Connexion imports starlette's test client, which warns about httpx on every start.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import uvicorn

    out = out or sys.stdout
    if settings.workers > 1 and settings.db == ":memory:":
        print(
            "vpp-sandbox serve: --workers needs a shared store; give --db a file or a "
            "postgresql:// URL (each worker would have its own :memory: store).",
            file=sys.stderr,
        )
        return 2
    try:
        settings, note, where = asyncio.run(_prepare(settings))
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
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "reload": False,
        "log_level": settings.log_level,
        # uvicorn picks uvloop and httptools when they are installed (`vpp-sandbox[fast]`),
        # else asyncio and h11. No access log line per request (VPP_LOG_LEVEL=info still
        # logs the rest).
        "loop": "auto",
        "http": "auto",
        "access_log": False,
        "proxy_headers": False,  # a local sandbox: no proxy in front to believe
    }
    if settings.workers > 1:
        settings.export_for_workers()
        uvicorn.run(
            f"{__name__}:worker_app", factory=True, workers=settings.workers, **common
        )
    else:
        uvicorn.run(build(settings), workers=1, **common)
    return 0

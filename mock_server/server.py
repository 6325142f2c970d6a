"""`vpp-sandbox serve`: run the app under uvicorn (one worker, no reload) and say how to use it."""

from __future__ import annotations

import sys
import warnings
from typing import TextIO

from mock_server.settings import Settings

__all__ = ["banner", "serve"]


def banner(settings: Settings) -> str:
    """What the server prints at start-up: where it is and which credentials it accepts."""
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        "VPP Sandbox: a stateful sandbox of the Flatpeak VPP participations API",
        f"  Base URL:    {base}",
        f"  Swagger UI:  {base}/ui/",
        f"  Spec:        {base}/openapi.json",
        f"  Data:        {settings.db}",
        "  Accounts (GET /login with HTTP Basic ACCOUNT_ID:API_KEY):",
    ]
    for account in settings.accounts:
        mode = "live" if account.live_mode else "test"
        lines.append(f"    {account.account_id}  {mode} key  {account.api_key}")
    first = settings.accounts[0]
    lines.append(f"  Try:         curl -u {first.account_id}:{first.api_key} {base}/login")
    return "\n".join(lines)


def serve(settings: Settings, out: TextIO | None = None) -> int:
    """Serve until interrupted; returns the process exit code."""
    # Connexion imports starlette's test client, which warns about httpx on every start.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import uvicorn

    from mock_server.app import create_app
    from mock_server.store import Store

    store = Store(settings.db)
    app = create_app(settings, store)
    print(banner(settings), file=out or sys.stdout, flush=True)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            workers=1,
            reload=False,
            log_level=settings.log_level,
        )
    finally:
        store.close()
    return 0

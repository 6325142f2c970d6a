"""`vpp-sandbox serve` starts uvicorn, prints where it is and with which keys, and answers."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.serve_process import served
from tests.stores import memory_store
from vpp_sandbox.mock_server.server import Lifespan, banner
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Settings


def test_banner_names_the_urls_and_every_key() -> None:
    text = banner(Settings(port=9999))
    assert "http://127.0.0.1:9999" in text and "http://127.0.0.1:9999/ui/" in text
    for account in DEFAULT_ACCOUNT:
        assert account.account_id in text and account.api_key in text


def test_the_heap_is_frozen_once_start_up_is_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: events.append("freeze"))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            events.append("started")
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "http.response.start", "status": 204, "headers": []})

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        events.append(message["type"])

    wrapped = Lifespan(app, memory_store())
    asyncio.run(wrapped({"type": "lifespan"}, receive, send))
    assert events == ["started", "freeze", "lifespan.startup.complete"]
    asyncio.run(wrapped({"type": "http"}, receive, send))
    assert events[-1] == "http.response.start" and events.count("freeze") == 1


@pytest.mark.slow
def test_serve_runs_a_real_server(tmp_path: Path) -> None:
    with served("--db", str(tmp_path / "s.db"), cwd=tmp_path, port_via_env=True) as running:
        base = running.base_url
        r = requests.get(
            f"{base}/login",
            auth=(DEFAULT_ACCOUNT[0].account_id, DEFAULT_ACCOUNT[0].api_key),
            timeout=5,
        )
        assert r.status_code == 200
        token = r.json()["bearer_token"]
        r = requests.get(
            f"{base}/vpp-participations",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert r.status_code == 200 and r.json()["data"] == []
        assert requests.get(f"{base}/ui/", timeout=5).status_code == 200
    out = running.output
    assert f"Base URL:    {base}" in out
    assert DEFAULT_ACCOUNT[0].api_key in out and DEFAULT_ACCOUNT[1].api_key in out
    assert (tmp_path / "s.db").exists()

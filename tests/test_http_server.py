"""`vpp-sandbox serve` starts uvicorn, prints where it is and with which keys, and answers."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
import requests
from starlette.types import Message

from tests.serve_process import served
from tests.stores import memory_store
from vpp_sandbox.mock_server.app import create_app
from vpp_sandbox.mock_server.server import banner
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Settings


def test_banner_names_the_urls_and_every_key() -> None:
    text = banner(Settings(port=9999))
    assert "http://127.0.0.1:9999" in text and "http://127.0.0.1:9999/ui/" in text
    for account in DEFAULT_ACCOUNT:
        assert account.account_id in text and account.api_key in text


def test_start_up_builds_the_stack_then_freezes_the_heap_and_shutdown_closes_its_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: events.append("freeze"))
    app = create_app(Settings(db=":memory:"))
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        built = app.middleware.middleware_stack is not None
        events.append(f"{message['type']} (stack built: {built})")

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert events == [
        "freeze",
        "lifespan.startup.complete (stack built: True)",
        "lifespan.shutdown.complete (stack built: True)",
    ]
    with pytest.raises(Exception, match="closed"):
        asyncio.run(app.state.store.count())


def test_a_store_handed_in_stays_open_after_shutdown() -> None:
    store = memory_store()
    app = create_app(Settings(db=":memory:"), store)
    with app.test_client() as client:
        assert client.get("/openapi.json").status_code == 200
    assert asyncio.run(store.count()) == 0


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

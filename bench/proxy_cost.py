"""Print what `vpp-sandbox proxy` adds per exchange, and what its ledger holds in memory.

    .venv/bin/python bench/proxy_cost.py [--requests 200] [--participations 5000]

Latency: the in-process sandbox answered directly, then through the in-process proxy (httpx
with an ASGI transport: no sockets on either side), median per request; the difference is the
proxy's forwarding plus every check. Memory: tracemalloc while the ledger learns
`--participations` participations, each seen as created and then retrieved (two views each,
the most it keeps), at the default bound of 5,000. Figures only, no asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import io
import json
import secrets
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from vpp_sandbox.contract_tests.proxy import ContractProxy, ProxyOptions
from vpp_sandbox.contract_tests.proxy_ledger import ProxyLedger
from vpp_sandbox.contract_tests.target import Exchange
from vpp_sandbox.mock_server.app import create_app
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Settings
from vpp_sandbox.mock_server.stores import open_store

ACCOUNT = DEFAULT_ACCOUNT[0]
BASIC = "Basic " + base64.b64encode(f"{ACCOUNT.account_id}:{ACCOUNT.api_key}".encode()).decode()


async def _timed(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> float:
    start = time.perf_counter()
    response = await client.request(method, url, **kw)
    assert response.status_code < 300, response.text
    return (time.perf_counter() - start) * 1e3


def _body() -> dict[str, str]:
    return {"device_id": f"dev_{secrets.token_hex(12)}", "provider_id": f"prv_{'1' * 24}",
            "programme_id": f"vpr_{'2' * 24}"}


async def _run(app: Any, n: int) -> dict[str, float]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://bench") as client:
        login = await client.get("/login", headers={"Authorization": BASIC})
        auth = {"Authorization": f"Bearer {login.json()['bearer_token']}"}
        times: dict[str, list[float]] = {"create": [], "retrieve": [], "list 10": []}
        pid = ""
        for _ in range(n):
            start = time.perf_counter()
            created = await client.post("/vpp-participations", json=_body(), headers=auth)
            times["create"].append((time.perf_counter() - start) * 1e3)
            pid = created.json()["id"]
            times["retrieve"].append(
                await _timed(client, "GET", f"/vpp-participations/{pid}", headers=auth))
            times["list 10"].append(
                await _timed(client, "GET", "/vpp-participations?limit=10", headers=auth))
        return {k: statistics.median(v) for k, v in times.items()}


def _sandbox() -> Any:
    return create_app(Settings(db=":memory:"), open_store(":memory:"))


def _memory(count: int) -> None:
    app = _sandbox()

    async def one() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://bench") as client:
            login = await client.get("/login", headers={"Authorization": BASIC})
            auth = {"Authorization": f"Bearer {login.json()['bearer_token']}"}
            created = await client.post("/vpp-participations", json=_body(), headers=auth)
            data: dict[str, Any] = created.json()
            return data

    sample = asyncio.run(one())
    headers = {"Authorization": "Bearer opaque-bench-token"}
    ledger = ProxyLedger(max_participations=count)
    ledger.add_token("opaque-bench-token", ledger.identity_of({}) or _identity())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        p = copy.deepcopy(sample)
        p["id"] = f"vpp_{i:024x}"
        for op, method, path in (("create", "POST", "/vpp-participations"),
                                 ("retrieve", "GET", f"/vpp-participations/{p['id']}")):
            view = p if op == "create" else copy.deepcopy(p)
            text = json.dumps(view)
            ledger.observe(Exchange(method, path, {}, headers, None, 200 if op == "retrieve"
                                    else 201, {}, text, "http://bench" + path, view))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    size = len(json.dumps(sample))
    print(f"ledger: {count:,} participations (a {size:,}-byte participation, two views each) "
          f"{used / 1e6:.1f} MB, {used / count / 1e3:.1f} kB a participation")


def _identity() -> Any:
    from vpp_sandbox.contract_tests.ledger import Identity

    return Identity(ACCOUNT.account_id, False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--participations", type=int, default=5000)
    args = parser.parse_args()
    direct = asyncio.run(_run(_sandbox(), args.requests))
    out = io.StringIO()
    proxy = ContractProxy(ProxyOptions("http://upstream"),
                          transport=httpx.ASGITransport(app=_sandbox()), out=out)
    through = asyncio.run(_run(proxy, args.requests))
    assert proxy.tally.violations == 0, out.getvalue()
    print(f"median ms per request, {args.requests} of each, in-process (no sockets)")
    for name in direct:
        print(f"  {name:<10} sandbox {direct[name]:6.2f}  through the proxy {through[name]:6.2f}"
              f"  added {through[name] - direct[name]:6.2f}")
    _memory(args.participations)
    return 0


if __name__ == "__main__":
    sys.exit(main())

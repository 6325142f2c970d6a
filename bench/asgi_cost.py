"""CPU time per request of the sandbox's ASGI app, in process: no sockets, no uvicorn, no wrk.

  .venv/bin/python bench/asgi_cost.py [--before REV] [--ops retrieve,list] [--requests 2000]

Builds the app as `vpp-sandbox serve --world load --size 10000 --seed 1` does (a new SQLite
file, default settings, autopilot on), then sends it requests one after the other through its
ASGI interface and prints the process CPU time per request (the minimum over --repeats runs:
the least disturbed by other processes on a shared machine). It measures what our code and
Connexion's stack cost, not the server around them (bench/vs_prism.py measures that).

Where the time goes: the CPU spent inside the store's methods (SQL, rows, the checked encoder)
is measured apart, in runs of their own on a second app over the same store whose store is
wrapped (requests run one at a time, so its awaits do not overlap; the wrapper's own cost is
kept out of the whole), and printed beside the whole, with the rest (the pipeline: Connexion's
middleware, ours, validation, the handler). Then issue 16's targets, met or MISSED with the
distance.

With --before REV, the same measurement runs in turn (A B A B) in fresh processes for the git
revision REV and for the work tree (or --after REV), and both are printed with the change.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from harness import (
    ACCOUNT,
    ROOT,
    SUSPEND_RECORDS,
    TEST_KEY,
    VENV_PYTHON,
    export,
    pool_body,
)

if TYPE_CHECKING:  # the type only: measure() imports the package (maybe an older revision)
    from vpp_sandbox.mock_server.store import Store

OPS = ("retrieve", "list", "create", "update")


def scope_of(
    method: str, path: str, query: str, headers: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8080"), *headers],
        "state": {},
    }


async def call(
    app: Any,
    method: str,
    path: str,
    query: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    hdrs = list(headers or [])
    if body:
        hdrs += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a client that stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope_of(method, path, query, hdrs), receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


# Issue 16's targets: CPU per request in process, in microseconds.
TARGETS_US = {"retrieve": 150, "list": 220, "create": 400, "update": 400}
STORE_CPU: list[float] = [0.0]  # seconds of CPU inside the store's methods, accumulated


class TimedStore:
    """The store, with the CPU time spent inside each of its coroutine methods added up."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not asyncio.iscoroutinefunction(value):
            return value

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return await value(*args, **kwargs)
            finally:
                STORE_CPU[0] += time.process_time() - started

        return timed


def measure(ops: list[str], size: int, requests: int, repeats: int) -> dict[str, list[float]]:
    """CPU seconds per request of each operation, one figure per repeat (in this process)."""
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from vpp_sandbox.mock_server.app import create_app
    from vpp_sandbox.mock_server.catalog import Catalog
    from vpp_sandbox.mock_server.clock import SandboxClock
    from vpp_sandbox.mock_server.settings import Settings
    from vpp_sandbox.mock_server.worlds import prepare

    tmp = Path(tempfile.mkdtemp(prefix="vpp-asgi-"))
    try:
        settings = Settings(db=str(tmp / "cost.db"), world="load", size=size, seed=1)
        try:  # the async store (this code); --before an older revision: its sync Store
            from vpp_sandbox.mock_server.stores import open_store
        except ImportError:
            # An older revision's sync Store(path), which this revision's types do not describe.
            older = importlib.import_module("vpp_sandbox.mock_server.store")
            store: Any = older.Store(settings.db)
            clock = SandboxClock(store)
            catalog: Any = Catalog()  # type: ignore[call-arg]
            settings, _ = prepare(settings, store, clock, catalog)  # type: ignore[misc]
        else:
            store = open_store(settings.db)
            clock = SandboxClock(store)
            catalog = Catalog(store)
            settings, _ = asyncio.run(prepare(settings, store, clock, catalog))
        # The wrapper forwards every attribute of the store: to the app, it is the store.
        # Two apps on the one store: the whole is timed on the app as served; the store's share
        # on one whose store is wrapped (the wrapper's own cost stays out of the whole).
        app = create_app(settings, store, clock=clock, catalog=catalog)
        timed = create_app(settings, cast("Store", TimedStore(store)), clock=clock, catalog=catalog)
        return asyncio.run(_measure(app, timed, ops, requests, repeats))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _measure(
    app: Any, timed: Any, ops: list[str], requests: int, repeats: int
) -> dict[str, list[float]]:
    basic = base64.b64encode(f"{ACCOUNT}:{TEST_KEY}".encode())
    status, body = await call(app, "GET", "/login", headers=[(b"authorization", b"Basic " + basic)])
    assert status == 200, body
    auth = [(b"authorization", b"Bearer " + json.loads(body)["bearer_token"].encode())]
    status, body = await call(app, "GET", "/vpp-participations", "limit=1", auth)
    first = json.loads(body)["data"][0]["id"]
    pool = []
    for i in range(50):
        status, body = await call(
            app,
            "POST",
            "/vpp-participations",
            headers=auth,
            body=json.dumps(pool_body("POOL", i)).encode(),
        )
        pid = json.loads(body)["id"]
        status, body = await call(
            app,
            "POST",
            f"/vpp-participations/{pid}",
            headers=auth,
            body=json.dumps({"participation_state": SUSPEND_RECORDS}).encode(),
        )
        assert status == 200, body
        pool.append(pid)
    gc.collect()
    gc.freeze()  # as `serve` does once start-up is complete
    counter = [0]

    def request(op: str) -> tuple[str, str, str, bytes]:
        counter[0] += 1
        n = counter[0]
        if op == "retrieve":
            return "GET", f"/vpp-participations/{first}", "", b""
        if op == "list":
            return "GET", "/vpp-participations", "limit=30", b""
        if op == "create":
            return "POST", "/vpp-participations", "", json.dumps(pool_body("BENCH", n)).encode()
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1830297600 + n))
        return (
            "POST",
            f"/vpp-participations/{pool[n % len(pool)]}",
            "",
            json.dumps(
                {
                    "participation_state": [
                        {
                            "state": "SUSPENDED",
                            "status": "IN_PROGRESS",
                            "suspension_reasons": ["OPERATOR_REQUEST"],
                        },
                        {"state": "ACTIVE", "status": "PENDING", "expected_at": at},
                    ]
                }
            ).encode(),
        )

    out: dict[str, list[float]] = {op: [] for op in ops}
    for op in ops:
        for _ in range(requests // 10):  # warm-up
            method, path, query, body = request(op)
            await call(app, method, path, query, auth, body)
        for _ in range(repeats):
            for served in (app, timed):
                prepared = [request(op) for _ in range(requests)]
                STORE_CPU[0] = 0.0
                started = time.process_time()
                for method, path, query, body in prepared:
                    status, _ = await call(served, method, path, query, auth, body)
                    if status >= 300:
                        raise SystemExit(f"{op}: {status} {_[:300]!r}")
                if served is app:
                    out[op].append((time.process_time() - started) / requests)
                else:
                    out.setdefault(op + ":store", []).append(STORE_CPU[0] / requests)
    return out


def report(result: dict[str, list[float]], ops: list[str]) -> None:
    """Each operation's CPU per request, where it goes, and the targets."""
    print("CPU per request in process (min of the runs; in the store / the rest)")
    for op in ops:
        runs, stored = result[op], result.get(op + ":store", [])
        whole = min(runs) * 1e6
        inside = min(stored) * 1e6 if stored else float("nan")  # its own runs: their minimum
        print(
            f"  {op:<9} {whole:7.0f} us (max {max(runs) * 1e6:.0f})   store {inside:5.0f} us   "
            f"pipeline and handler {whole - inside:5.0f} us"
        )
    print("targets (issue 16, CPU per request in process)")
    for op in ops:
        whole, need = min(result[op]) * 1e6, TARGETS_US[op]
        verdict = "met" if whole <= need else f"MISSED by {whole - need:.0f} us"
        print(f"  {op:<9} <= {need} us {whole:16.0f} us  {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default="retrieve,list,create,update")
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds with --before")
    parser.add_argument("--before", help="git revision to compare the work tree with")
    parser.add_argument("--after", help="git revision instead of the work tree")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    ops = [o for o in args.ops.split(",") if o]
    if set(ops) - set(OPS):
        parser.error(f"operations are {', '.join(OPS)}")
    if args.child or not args.before:
        result = measure(ops, args.size, args.requests, args.repeats)
        if args.child:
            print(json.dumps(result))
        else:
            report(result, ops)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="vpp-asgi-ab-"))
    try:
        sides = {
            "before": export(args.before, tmp / "before"),
            "after": export(args.after, tmp / "after") if args.after else ROOT,
        }
        results: dict[str, dict[str, list[float]]] = {s: {op: [] for op in ops} for s in sides}
        for r in range(args.rounds):
            for side in list(sides) if r % 2 == 0 else list(reversed(sides)):
                source = sides[side]
                out = subprocess.run(
                    [
                        str(VENV_PYTHON),
                        str(ROOT / "bench" / "asgi_cost.py"),
                        "--child",
                        "--ops",
                        ",".join(ops),
                        "--size",
                        str(args.size),
                        "--requests",
                        str(args.requests),
                        "--repeats",
                        str(args.repeats),
                    ],
                    cwd=source,
                    env={**os.environ, "PYTHONPATH": str(source)},
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                if out.returncode:
                    raise SystemExit(f"{side}: {out.stderr[-2000:]}")
                for op, runs in json.loads(out.stdout.splitlines()[-1]).items():
                    results[side].setdefault(op, []).extend(runs)
                print(f"round {r + 1} {side} done", file=sys.stderr, flush=True)
        print(
            f"\nCPU per request in process (min of {args.rounds} x {args.repeats} runs of "
            f"{args.requests}): before {args.before}, after {args.after or 'work tree'}"
        )
        for op in ops:
            b, a = min(results["before"][op]), min(results["after"][op])
            print(
                f"  {op:<9} before {b * 1e6:6.0f} us   after {a * 1e6:6.0f} us   "
                f"{(a / b - 1) * 100:+.1f}%"
            )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

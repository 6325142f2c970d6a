"""Print what the request journal costs per request and in memory (figures only, no asserts).

    .venv/bin/python bench/journal_cost.py [--requests 20000] [--rounds 5]

The middleware is timed around a minimal ASGI app (no sockets, no Connexion), so the figure is
its own cost: a success with a bearer token (the authenticator's cached path), an error answer
(its body parsed for the code and message), and the same with the access log on (to /dev/null).
Memory is measured with tracemalloc by filling every ring of the default bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpp_sandbox.mock_server.auth import Authenticator
from vpp_sandbox.mock_server.journal import Entry, Journal, JournalMiddleware
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Settings

ERROR = json.dumps({
    "object": "error", "type": "invalid_request", "code": "invalid_state_transition",
    "message": "Cannot move vpp_1ecb0a8e2f4d4c6b9a7e5d3c from ENROLMENT_REQUESTED to ACTIVE. "
    "Allowed next states: AWAITING_CUSTOMER_CONSENT, FAILED.",
    "context": "api.vpp_participation_update", "live_mode": False,
    "time_created": "2026-11-25T10:00:00Z",
}).encode()
OK = b'{"object":"vpp-participation"}'


def _app(status: int, body: bytes) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    return app


async def _drive(app: Any, scope: dict[str, Any], n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    start = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - start) / n * 1e6


def _median(app: Any, scope: dict[str, Any], n: int, rounds: int) -> float:
    return statistics.median(asyncio.run(_drive(app, scope, n)) for _ in range(rounds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    auth = Authenticator(settings)
    token = auth.issue(DEFAULT_ACCOUNT[0])["bearer_token"]
    scope = {
        "type": "http", "method": "GET", "path": "/vpp-participations/vpp_" + "1" * 24,
        "query_string": b"", "headers": [
            (b"host", b"127.0.0.1:8080"), (b"user-agent", b"bench"), (b"accept", b"*/*"),
            (b"authorization", f"Bearer {token}".encode()),
        ],
    }
    n, rounds = args.requests, args.rounds
    print(f"journal middleware, {n:,} requests x {rounds} rounds (median), us per request")
    with open(os.devnull, "w") as devnull:
        cases = [
            ("success (200)", OK, 200, None),
            ("error (409, body parsed)", ERROR, 409, None),
            ("success, access log on", OK, 200, lambda line: print(line, file=devnull)),
        ]
        for label, body, status, echo in cases:
            bare = _app(status, body)
            wrapped = JournalMiddleware(bare, journal=Journal(echo=echo), verify=auth.verify)
            base, cost = _median(bare, scope, n, rounds), _median(wrapped, scope, n, rounds)
            print(f"  {label:<28} bare {base:6.2f}  journaled {cost:6.2f}  "
                  f"cost {cost - base:6.2f}")

    bounds = Journal()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    message = json.loads(ERROR)["message"]
    for ns in range(bounds.namespaces):
        for i in range(bounds.size):
            # Fresh strings, as requests make them; every other one an error with its message.
            path = f"/vpp-participations/vpp_{ns:012x}{i:012x}"
            code = "invalid_state_transition" if i % 2 else None
            entry = Entry(f"req_{ns:08x}{i:08x}", time.time(), "POST", path, "", 409, 2.5,
                          code, (message + " ")[:-1] if code else None)
            bounds.record((f"acc_{ns:024x}", False), entry)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    entries = len(bounds)
    print(f"memory: {entries:,} entries ({bounds.size} x {bounds.namespaces} namespaces, half "
          f"errors) {used / 1e6:.1f} MB, {used / entries:.0f} bytes an entry")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print what the request journal costs per request and in memory (figures only, no asserts).

    .venv/bin/python bench/journal_cost.py [--requests 20000] [--rounds 5]

The journal's middleware (`journal.Front`, which also makes the request's facts and id) is timed
around a minimal ASGI app (no sockets, no Connexion), so the figure is its own cost: a success,
an error answer (its code and message taken from the request's facts, as the error renderer
leaves them), and a success with the access log on (to /dev/null). The caller is identified
elsewhere (`pipeline.Identify`), once; here it is a verified token's namespace.
Memory is measured with tracemalloc, next to what the journal charges itself: 256 namespaces
of 100 ordinary entries (half of them errors), then the worst case of the issue (256
namespaces x 100 requests with 30 KB query strings), which the default byte bound holds.
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

from vpp_sandbox.mock_server.journal import Entry, Front, Journal
from vpp_sandbox.mock_server.request import facts_of
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

ERROR = json.dumps({
    "object": "error", "type": "invalid_request", "code": "invalid_state_transition",
    "message": "Cannot move vpp_1ecb0a8e2f4d4c6b9a7e5d3c from ENROLMENT_REQUESTED to ACTIVE. "
    "Allowed next states: AWAITING_CUSTOMER_CONSENT, FAILED.",
    "context": "api.vpp_participation_update", "live_mode": False,
    "time_created": "2026-11-25T10:00:00Z",
}).encode()
OK = b'{"object":"vpp-participation"}'


def _app(status: int, body: bytes) -> Any:
    error = json.loads(body) if status >= 400 else None

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if "vpp_sandbox" in scope:  # journaled: what Identify and the renderer leave
            facts = facts_of(scope)
            facts.caller.claims = {"account_id": DEFAULT_ACCOUNT[0].account_id,
                                   "live_mode": False}
            if error is not None:
                facts.error = (error["code"], error["message"])
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
    scope = {
        "type": "http", "method": "GET", "path": "/vpp-participations/vpp_" + "1" * 24,
        "query_string": b"", "headers": [
            (b"host", b"127.0.0.1:8080"), (b"user-agent", b"bench"), (b"accept", b"*/*"),
            (b"authorization", b"Bearer (verified once, elsewhere)"),
        ],
    }
    n, rounds = args.requests, args.rounds
    print(f"journal middleware, {n:,} requests x {rounds} rounds (median), us per request")
    with open(os.devnull, "w") as devnull:
        cases = [
            ("success (200)", OK, 200, None),
            ("error (409)", ERROR, 409, None),
            ("success, access log on", OK, 200, lambda line: print(line, file=devnull)),
        ]
        for label, body, status, echo in cases:
            bare = _app(status, body)
            wrapped = Front(bare, journal=Journal(echo=echo))
            base, cost = _median(bare, scope, n, rounds), _median(wrapped, scope, n, rounds)
            print(f"  {label:<28} bare {base:6.2f}  journaled {cost:6.2f}  "
                  f"cost {cost - base:6.2f}")

    message = json.loads(ERROR)["message"]
    for label, query in (("ordinary", ""), ("30 KB queries", "q=" + "x" * 30_000)):
        bounds = Journal()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for ns in range(256):
            for i in range(bounds.size):
                # Fresh strings, as requests make them; every other one an error.
                path = f"/vpp-participations/vpp_{ns:012x}{i:012x}"
                code = "invalid_state_transition" if i % 2 else None
                entry = Entry(f"req_{ns:08x}{i:08x}", time.time(), "POST", path,
                              (query + " ")[:-1], 409, 2.5, code,
                              (message + " ")[:-1] if code else None)
                bounds.record((f"acc_{ns:024x}", False), entry)
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        entries = len(bounds)
        print(f"memory, {label}: {entries:,} entries in {bounds.namespace_count} namespaces "
              f"measured {used / 1e6:.1f} MB, charged {bounds.bytes / 1e6:.1f} MB "
              f"(bound {bounds.max_bytes / 1e6:.1f} MB), {used / entries:.0f} bytes an entry")
    return 0


if __name__ == "__main__":
    sys.exit(main())

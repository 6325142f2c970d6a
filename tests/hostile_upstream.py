"""An upstream on a loopback port that answers as the proxy's hostile cases need, and records.

The real sandbox cannot answer a status 999 or a gzip bomb, so the proxy's tests put this
server behind it: the request header `X-Answer` picks the answer, and every request that
reached it (whole: the body as its Content-Length said) is recorded, so a test can assert
what the proxy forwarded.

    X-Answer: bomb MB       a gzip answer of MB MiB of JSON whitespace (a few KiB encoded)
    X-Answer: gzip          a small JSON list page, gzip-encoded
    X-Answer: status N      status N (999 by default) with a JSON body
    X-Answer: big MB        a JSON list page of MB MB (valid participations, repeated)
    X-Answer: hold [N]      no answer until `release()` (at most 30 s), then status N (200:
                            an empty page, else an error object)
    (none)                  an empty list page
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACCOUNT_ID = "acc_" + "0f" * 12  # the account of the participations answered
EMPTY_PAGE = json.dumps(
    {"object": "list", "url": "/vpp-participations", "data": [], "has_more": False}
).encode()
REFUSED = json.dumps({
    "object": "error", "type": "invalid_request", "code": "token_invalid",
    "message": "Send a valid token.", "context": "api.vpp_participation_list",
    "live_mode": False, "time_created": "2026-01-01T00:00:00Z",
}).encode()  # fmt: skip


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Upstream:
    base_url: str
    received: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    holding: int = 0  # requests waiting for `release()` right now
    lock: threading.Lock = field(default_factory=threading.Lock)

    def release(self) -> None:
        self.released.set()

    def hold(self, delta: int) -> None:
        with self.lock:
            self.holding += delta


@cache
def bomb(megabytes: int) -> bytes:
    """gzip of `megabytes` MiB of spaces after a `[`: valid JSON's start, tiny when encoded."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b"[")]
    block = b" " * (1024 * 1024)
    parts += [packer.compress(block) for _ in range(megabytes)]
    parts.append(packer.compress(b"]") + packer.flush())
    return b"".join(parts)


# A participation as the sandbox answers one (its id and device vary), for pages the checks pass.
TEMPLATE = {
    "object": "vpp-participation", "reference_id": None, "live_mode": False,
    "location_id": "loc_2f706d906884b1da0878aa98", "current_state": "ENROLMENT_REQUESTED",
    "control_active": False, "telemetry_active": False, "suspension_reasons": [],
    "participation_state": [
        {"state": "ENROLMENT_REQUESTED", "status": "IN_PROGRESS",
         "description": "We've received your request to join the programme.",
         "occurred_at": "2026-01-01T00:00:00Z", "suspension_reasons": []},
        {"state": "AWAITING_CUSTOMER_CONSENT", "status": "PENDING",
         "description": "We need your permission to control your device during programme "
         "events. Please give consent to continue.",
         "expected_at": "2026-01-01T00:05:00Z", "suspension_reasons": []},
    ],
    "time_created": "2026-01-01T00:00:00Z", "time_updated": "2026-01-01T00:00:00Z",
    "provider": {"id": "prv_" + "b" * 24, "provider_display_name": "Cotswold Power",
                 "logo_url": "https://s.flatpeak.com/8135cbea04dc.png"},
    "programme": {"id": "vpr_" + "c" * 24, "programme_display_name": "Exeter Flex Rewards",
                  "learn_more_url": "https://cotswold.co.uk/programmes/exeter-flex-rewards"},
    "account_id": ACCOUNT_ID,
}  # fmt: skip


def participation(n: int) -> dict[str, object]:
    """The template with id and device number `n` (a page lists higher numbers first)."""
    return {**TEMPLATE, "id": f"vpp_{n:024x}", "device_id": f"dev_{n:024x}"}


@cache
def big(megabytes: int) -> bytes:
    """A list page of about `megabytes` MB: many participations (a page no server should send,
    but a proxy must judge without stalling everyone else)."""
    one = len(json.dumps(participation(0))) + 2
    count = megabytes * 1_000_000 // one
    page = [participation(n) for n in range(count, 0, -1)]
    return json.dumps(
        {"object": "list", "url": "/vpp-participations", "data": page, "has_more": False}
    ).encode()


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            upstream.received.append(Received(self.command, self.path, headers, body))
            kind, _, arg = headers.get("x-answer", "").partition(" ")
            status, payload, extra = 200, EMPTY_PAGE, {}
            if kind == "bomb":
                payload, extra = bomb(int(arg or 64)), {"Content-Encoding": "gzip"}
            elif kind == "gzip":
                payload, extra = gzip.compress(EMPTY_PAGE), {"Content-Encoding": "gzip"}
            elif kind == "status":
                status, payload = int(arg or 999), b'{"object": "error"}'
            elif kind == "big":
                payload = big(int(arg or 10))
            elif kind == "hold":
                upstream.hold(1)
                upstream.released.wait(30)
                upstream.hold(-1)
                status = int(arg or 200)
                payload = EMPTY_PAGE if status < 400 else REFUSED
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            # The proxy may stop reading (past its limit): the point of some tests.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _any

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a proxy that stopped reading past its limit: expected, not worth a traceback


@contextmanager
def hostile_upstream() -> Iterator[Upstream]:
    """The server on a free loopback port, in threads of this process, until the block ends."""
    upstream = Upstream("")
    server = _Server(("127.0.0.1", 0), _handler(upstream))
    server.daemon_threads = True
    upstream.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="hostile-upstream", daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        upstream.release()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

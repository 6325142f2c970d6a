"""A load balancer for tests: each request goes to the next upstream in turn (loopback).

What sits in front of replicas in a real deployment; here it makes a client's consecutive
requests land on different server processes. It forwards the request's bytes as they are
(the contract suite sends deliberately malformed headers that an HTTP client library would
refuse to forward), one request per connection: it asks the upstream to close after its
answer and relays that answer, so the client opens a new connection for its next request.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from tests.serve_process import free_port

__all__ = ["round_robin"]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.split(b"\r\n")
    kept = [line for line in lines[1:-2] if not line.lower().startswith(b"connection:")]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in kept)}
    body = b""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                break
    elif b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    return b"\r\n".join([lines[0], *kept, b"Connection: close", b"", b""]) + body


def _balancer(upstreams: list[str]) -> object:
    turn = itertools.cycle([(u.hostname, u.port) for u in map(urlsplit, upstreams)])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is not None:
                host, port = next(turn)
                up_reader, up_writer = await asyncio.open_connection(host, port)
                up_writer.write(request)
                await up_writer.drain()
                writer.write(await up_reader.read())  # the upstream closes after its answer
                await writer.drain()
                up_writer.close()
        finally:
            writer.close()

    return handle


@contextmanager
def round_robin(upstreams: list[str]) -> Iterator[str]:
    """Serve the balancer on a free port until the block ends; yields its base URL."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    server: list[asyncio.Server] = []

    async def start() -> None:
        server.append(await asyncio.start_server(_balancer(upstreams), "127.0.0.1", port))  # type: ignore[arg-type]
        started.set()

    def run() -> None:
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        def stop() -> None:
            server[0].close()
            loop.stop()

        loop.call_soon_threadsafe(stop)
        thread.join(timeout=10)
        loop.close()

"""The request journal: each namespace's recent requests, in memory, and the optional access log.

What a developer debugging their client wants to see (WireMock's request journal, `stripe logs
tail`): method, path, status, latency, a request id, and the error the sandbox answered (the
code and message say what was wrong with the request: a schema violation, an illegal
transition, a bad token). It is bounded (a ring of `size` entries per namespace, at most
`namespaces` namespaces, the least recently used one dropped first) and cheap on the hot
path: a success costs two clock readings, one pass over the headers and one append; only an
error's body (small, at most 8 KiB read) is parsed.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "JOURNAL_PATH",
    "Entry",
    "Journal",
    "JournalMiddleware",
    "NamespaceKey",
    "print_line",
]

NamespaceKey = tuple[str, bool]  # (account id, live mode): whose requests these are
JOURNAL_PATH = "/_sandbox/requests"  # reading the journal is not itself journaled
REQUEST_ID_HEADER = b"x-request-id"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ERROR_BODY_MAX = 8 * 1024


class Entry(NamedTuple):
    """One request as the sandbox answered it (a tuple: made on every request, cheap to build)."""

    request_id: str
    started: float  # Unix time (real time, not the namespace's sandbox clock)
    method: str
    path: str
    query: str
    status: int
    latency_ms: float
    code: str | None = None  # the error object's code and message, for 4xx and 5xx answers
    message: str | None = None

    @property
    def time(self) -> str:
        moment = datetime.fromtimestamp(self.started, tz=UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def to_json(self) -> dict[str, Any]:
        """The control API's `SandboxRequest` object."""
        error = None if self.code is None else {"code": self.code, "message": self.message or ""}
        return {
            "object": "sandbox_request",
            "id": self.request_id,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 2),
            "error": error,
        }

    def access_line(self, namespace: NamespaceKey | None) -> str:
        """One access-log line: time, namespace, request, status, latency, id, error."""
        who = "-" if namespace is None else f"{namespace[0]}/{'live' if namespace[1] else 'test'}"
        target = self.path + (f"?{self.query}" if self.query else "")
        line = (
            f"{self.time} {who} \"{self.method} {target}\" {self.status} "
            f"{self.latency_ms:.1f}ms {self.request_id}"
        )
        if self.code is not None:
            line += f" {self.code}: {self.message}"
        return line


def print_line(line: str) -> None:
    """The access log's default output: standard output, flushed (whatever it is now)."""
    print(line, file=sys.stdout, flush=True)


class Journal:
    """Rings of recent entries per namespace; `size` 0 keeps nothing (the access log still runs)."""

    def __init__(
        self,
        size: int = 100,
        namespaces: int = 256,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.size = max(0, size)
        self.namespaces = max(1, namespaces)
        self.echo = echo
        self._rings: OrderedDict[NamespaceKey, deque[Entry]] = OrderedDict()

    def record(self, namespace: NamespaceKey | None, entry: Entry) -> None:
        if self.echo is not None:
            self.echo(entry.access_line(namespace))
        if namespace is None or self.size == 0:
            return
        ring = self._rings.get(namespace)
        if ring is None:
            ring = self._rings[namespace] = deque(maxlen=self.size)
            if len(self._rings) > self.namespaces:
                self._rings.popitem(last=False)  # the namespace heard from least recently
        else:
            self._rings.move_to_end(namespace)
        ring.append(entry)

    def recent(self, namespace: NamespaceKey, limit: int) -> tuple[list[Entry], bool]:
        """Up to `limit` entries of the namespace, newest first, and whether older ones remain."""
        ring = self._rings.get(namespace)
        if not ring:
            return [], False
        entries = list(itertools.islice(reversed(ring), max(0, limit)))
        return entries, len(ring) > len(entries)

    def __len__(self) -> int:
        return sum(len(ring) for ring in self._rings.values())

    @property
    def namespace_count(self) -> int:
        return len(self._rings)


class JournalMiddleware:
    """Outermost of the sandbox's own middleware: times each request and journals its answer.

    `verify` turns a bearer token into its claims (`account_id`, `live_mode`) or raises; the
    authenticator caches verified tokens, so a success pays a dictionary lookup for it. Every
    answer carries `X-Request-Id` (the client's own, when it sent a sensible one).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        journal: Journal,
        verify: Callable[[str], Awaitable[dict[str, Any]]],
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.journal = journal
        self.verify = verify
        self.clock = clock
        self.timer = timer
        self._prefix = "req_" + secrets.token_hex(4)
        self._counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == JOURNAL_PATH:
            await self.app(scope, receive, send)
            return
        started, began = self.clock(), self.timer()
        auth = b""
        request_id = ""
        for key, value in scope["headers"]:
            if key == b"authorization":
                auth = value
            elif key == REQUEST_ID_HEADER:
                given = value.decode("latin-1")
                if _CLIENT_ID.match(given):
                    request_id = given
        if not request_id:
            request_id = f"{self._prefix}{next(self._counter):08x}"
        status = 500
        error_chunks: list[bytes] | None = None

        async def send_(message: Message) -> None:
            nonlocal status, error_chunks
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
                if status >= 400:
                    error_chunks = []
            elif error_chunks is not None and sum(map(len, error_chunks)) < _ERROR_BODY_MAX:
                error_chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_)
        finally:
            code, text = _error_of(error_chunks) if error_chunks is not None else (None, None)
            if status >= 500 and code is None:
                code = "internal_error"
            entry = Entry(
                request_id,
                started,
                scope["method"],
                scope["path"],
                scope.get("query_string", b"").decode("latin-1"),
                status,
                (self.timer() - began) * 1000.0,
                code,
                text,
            )
            self.journal.record(await self._namespace(auth, scope["path"], status), entry)

    async def _namespace(self, auth: bytes, path: str, status: int) -> NamespaceKey | None:
        kind, _, value = auth.decode("latin-1").partition(" ")
        value = value.strip()
        if kind.lower() == "bearer" and value:
            try:
                claims = await self.verify(value)
            except Exception:  # not a token of this server: nobody's journal
                return None
            return str(claims["account_id"]), bool(claims["live_mode"])
        if kind.lower() == "basic" and path == "/login" and status == 200:
            try:
                account, _, key = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return account, key.startswith("sk_live_")
        return None


def _error_of(chunks: list[bytes]) -> tuple[str | None, str | None]:
    """The error object's code and message, when the body is one."""
    try:
        body = json.loads(b"".join(chunks)[:_ERROR_BODY_MAX])
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return None, None
    message = body.get("message")
    return body["code"], message if isinstance(message, str) else None

"""The request journal: each namespace's recent requests, in memory, and the optional access log.

What a developer debugging their client wants to see (WireMock's request journal, `stripe logs
tail`): method, path, status, latency, a request id, and the error the sandbox answered (the
code and message say what was wrong with the request: a schema violation, an illegal
transition, a bad token). It is bounded (a ring of `size` entries per namespace, at most
`namespaces` namespaces, the least recently used one dropped first) and cheap on the hot
path: two clock readings and one append a request; the namespace and the error come from the
request's facts (`mock_server.request`), nothing is parsed again.
"""

from __future__ import annotations

import itertools
import re
import secrets
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpp_sandbox.mock_server.request import SCOPE_KEY, Facts

__all__ = [
    "JOURNAL_PATH",
    "Entry",
    "Front",
    "Journal",
    "NamespaceKey",
    "print_line",
]

NamespaceKey = tuple[str, bool]  # (account id, live mode): whose requests these are
JOURNAL_PATH = "/_sandbox/requests"  # reading the journal is not itself journaled
REQUEST_ID_HEADER = b"x-request-id"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


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


class Front:
    """Outermost: makes the request's facts, gives it an id (`X-Request-Id` on every answer,
    the client's own when it sent a sensible one) and journals what it was answered."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        journal: Journal,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.journal = journal
        self.clock = clock
        self.timer = timer
        self.prefix = "req_" + secrets.token_hex(4)
        self.counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, began = self.clock(), self.timer()
        request_id = ""
        for key, value in scope["headers"]:
            if key == REQUEST_ID_HEADER:
                given = value.decode("latin-1")
                if _CLIENT_ID.match(given):
                    request_id = given
                break
        if not request_id:
            request_id = f"{self.prefix}{next(self.counter):08x}"
        facts = Facts(request_id)
        scope[SCOPE_KEY] = facts
        # Connexion's routing writes the operation into this dict: made here, every layer
        # (the error renderer above the routing too) sees the same one.
        scope.setdefault("extensions", {})
        status = 500
        tag = (REQUEST_ID_HEADER, request_id.encode())

        async def send_(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), tag]}
            await send(message)

        try:
            await self.app(scope, receive, send_)
        finally:
            if scope["path"] != JOURNAL_PATH:  # reading the journal is not itself journaled
                code, text = facts.error or (None, None)
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
                namespace = facts.caller.namespace or facts.caller.login
                self.journal.record(namespace, entry)

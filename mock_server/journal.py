"""The request journal: each namespace's recent requests, in memory, and the optional access log.

What a developer debugging their client wants to see (WireMock's request journal, `stripe logs
tail`): method, path, status, latency, a request id, and the error the sandbox answered (the
code and message say what was wrong with the request: a schema violation, an illegal
transition, a bad token). It is bounded in bytes, per namespace and in total: each entry's
fields are cut to a few hundred characters (a 30 KB query string is not kept whole), a
namespace keeps at most `size` entries, and past `max_bytes` in all the oldest entry of the
namespace holding the most goes first, so a tenant with many accounts takes only its own
entries down to everyone's fair share, never another tenant's whole journal. Cheap on the hot
path: two clock readings, one append and a heap push a request; the namespace and the error
come from the request's facts (`mock_server.request`), nothing is parsed again.
"""

from __future__ import annotations

import heapq
import itertools
import re
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpp_sandbox.mock_server.request import SCOPE_KEY, Facts

__all__ = [
    "DEFAULT_BYTES",
    "FIELD_CHARS",
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
# What the journal may hold in all, and the longest path, query or message an entry keeps.
DEFAULT_BYTES = 16 * 1024 * 1024
FIELD_CHARS = 1024
_METHOD_CHARS = 16
# Bytes an entry costs beyond its strings' characters (the tuple, its floats and ints, the
# string objects' headers, the ring's slot), and a namespace's ring and its dict slot:
# measured with tracemalloc (bench/journal_cost.py), rounded up.
_ENTRY_OVERHEAD = 400
_RING_OVERHEAD = 800


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


def clip(text: str, limit: int = FIELD_CHARS) -> str:
    """`text`, or its first `limit` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _bounded(entry: Entry) -> Entry:
    """The entry with every field a client controls cut to its bound."""
    if (
        len(entry.path) <= FIELD_CHARS
        and len(entry.query) <= FIELD_CHARS
        and len(entry.message or "") <= FIELD_CHARS
        and len(entry.method) <= _METHOD_CHARS
    ):
        return entry
    return entry._replace(
        method=clip(entry.method, _METHOD_CHARS),
        path=clip(entry.path),
        query=clip(entry.query),
        message=None if entry.message is None else clip(entry.message),
    )


def _cost(entry: Entry) -> int:
    """What keeping the entry costs, in bytes (characters of its strings plus the overhead)."""
    return (
        _ENTRY_OVERHEAD
        + len(entry.request_id)
        + len(entry.method)
        + len(entry.path)
        + len(entry.query)
        + len(entry.code or "")
        + len(entry.message or "")
    )


class _Ring:
    """One namespace's entries, oldest first, with their costs, and what they cost in all."""

    __slots__ = ("bytes", "entries")

    def __init__(self) -> None:
        self.entries: deque[tuple[Entry, int]] = deque()
        self.bytes = _RING_OVERHEAD


class Journal:
    """Recent entries per namespace, bounded in bytes; `size` 0 keeps nothing (the access log
    still runs)."""

    def __init__(
        self,
        size: int = 100,
        max_bytes: int = DEFAULT_BYTES,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.size = max(0, size)
        self.max_bytes = max(1, max_bytes)
        self.echo = echo
        self.bytes = 0
        self._rings: dict[NamespaceKey, _Ring] = {}
        # (-bytes, order, namespace) pushed whenever a ring's bytes change; an item whose bytes
        # are not the ring's any more is stale and skipped (rebuilt when they pile up). Kept
        # only near the bound (from `max_bytes` down to half of it): below, nothing is evicted,
        # so a journal that never fills costs no heap push a request.
        self._heap: list[tuple[int, int, NamespaceKey]] | None = None
        self._order = itertools.count()

    def record(self, namespace: NamespaceKey | None, entry: Entry) -> None:
        entry = _bounded(entry)
        if self.echo is not None:
            self.echo(entry.access_line(namespace))
        if namespace is None or self.size == 0:
            return
        ring = self._rings.get(namespace)
        if ring is None:
            ring = self._rings[namespace] = _Ring()
            self.bytes += ring.bytes
        elif len(ring.entries) >= self.size:
            self._drop_oldest(ring)
        cost = _cost(entry)
        ring.entries.append((entry, cost))
        ring.bytes += cost
        self.bytes += cost
        heap = self._heap
        if heap is not None:
            heapq.heappush(heap, (-ring.bytes, next(self._order), namespace))
            if self.bytes < self.max_bytes // 2:
                self._heap = None
            elif len(heap) > 4 * len(self._rings) + 64:
                self._rebuild()
        while self.bytes > self.max_bytes and self._rings:
            self._evict()

    def _rebuild(self) -> None:
        self._heap = [(-r.bytes, next(self._order), ns) for ns, r in self._rings.items()]
        heapq.heapify(self._heap)

    def _drop_oldest(self, ring: _Ring) -> None:
        _, cost = ring.entries.popleft()
        ring.bytes -= cost
        self.bytes -= cost

    def _evict(self) -> None:
        """The oldest entry of the namespace that holds the most bytes goes."""
        if self._heap is None:
            self._rebuild()
        heap = self._heap
        assert heap is not None
        while heap:
            held, _, namespace = heapq.heappop(heap)
            ring = self._rings.get(namespace)
            if ring is None or ring.bytes != -held:
                continue  # stale: the ring changed (or went) since this was pushed
            self._drop_oldest(ring)
            if ring.entries:
                heapq.heappush(heap, (-ring.bytes, next(self._order), namespace))
            else:
                del self._rings[namespace]
                self.bytes -= ring.bytes
            return
        raise AssertionError("the journal's heap lost a namespace")  # pragma: no cover

    def recent(self, namespace: NamespaceKey, limit: int) -> tuple[list[Entry], bool]:
        """Up to `limit` entries of the namespace, newest first, and whether older ones remain."""
        ring = self._rings.get(namespace)
        if ring is None:
            return [], False
        kept = itertools.islice(reversed(ring.entries), max(0, limit))
        entries = [entry for entry, _ in kept]
        return entries, len(ring.entries) > len(entries)

    def forget(self, account_id: str) -> None:
        """Drop both namespaces of an account (it was deleted)."""
        for live in (False, True):
            ring = self._rings.pop((account_id, live), None)
            if ring is not None:
                self.bytes -= ring.bytes

    def __len__(self) -> int:
        return sum(len(ring.entries) for ring in self._rings.values())

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

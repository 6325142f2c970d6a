"""`vpp-sandbox proxy`: a reverse proxy that checks every exchange it forwards against the contract.

Put it between any client and any implementation (staging, the sandbox): it forwards each
request unchanged (method, path, query, headers but the hop-by-hop ones, body) and returns
the answer unchanged, and meanwhile judges it with `checks.verdict`, the suite's own
per-response checks: rules 1-15 (the cross-request ones, rule 15's pages included, with the
suite's Ledger, keyed by the token's namespace), §1, §2 (the response against the spec), §4,
§6 and §7. Their Violations are logged as they are, never re-read from a message. In `warn`
mode answers pass through and violations are logged; in `fail` mode a violating answer is
replaced by a 502 `contract_violation` in the Flatpeak error format.

Requests of one namespace are forwarded one at a time, so the ledger sees them in the order
the server handled them (a read that overtook a write would look stale); other namespaces, and
requests without a token, go in parallel. A namespace is a token's own, by a hash of the whole
token, until the upstream accepts it (proxy_ledger), so a forged token queues behind nobody
else's requests. Only whole requests are forwarded: a client that leaves mid-body has nothing
sent. An answer is bounded as sent and as decoded (proxy_body: a gzip bomb stops at the cap);
one larger than `INLINE_BYTES` is judged on a thread, at most `judges` at once, so judging it
never holds up other exchanges; a status outside 200-599 is a 502.

The HTTP limits of the server it runs in (head size and time, body size and time, idle and
kept-alive connections, the connection cap) are the sandbox's own, handed to `run` by the
composition root (`Serving`): this package imports no server code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson

from vpp_sandbox.contract_tests.checks import Verdict, verdict
from vpp_sandbox.contract_tests.findings import Violation
from vpp_sandbox.contract_tests.junit import write_proxy_junit
from vpp_sandbox.contract_tests.ledger import Identity, participations_in
from vpp_sandbox.contract_tests.proxy_body import (
    BoundedBody,
    TooLarge,
    UnsupportedCoding,
    accept_encoding,
)
from vpp_sandbox.contract_tests.proxy_har import HarLog
from vpp_sandbox.contract_tests.proxy_ledger import ProxyLedger
from vpp_sandbox.contract_tests.proxy_report import LogEntry, Tally, dumps
from vpp_sandbox.contract_tests.target import Exchange

__all__ = ["INLINE_BYTES", "ContractProxy", "ProxyOptions", "Serving", "run"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded (plus Host, which
# names the upstream, and Content-Length, which the client library sets for the same body).
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}
CONTEXT = "vpp_sandbox.proxy"
# Answers larger than this (as sent or decoded) are judged on a thread, at most `judges` at
# once: the checks of a small one take about a millisecond, less than a thread's hop costs.
INLINE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """Where to forward, what to do with violations, and the bounds."""

    upstream: str
    mode: str = "warn"  # or "fail"
    log: str | None = None  # violation log, one JSON object a line
    junit_xml: str | None = None
    har: str | None = None  # every exchange, as a HAR 1.2 log written as the proxy goes
    max_body_bytes: int = 1024 * 1024  # requests larger than this are a 413, never forwarded
    max_response_bytes: int = 16 * 1024 * 1024  # larger answers, sent or decoded, are a 502
    timeout: float = 30.0  # seconds to wait for the upstream (a 504 after it)
    max_participations: int = 5000  # the ledger's memory (see proxy_ledger)
    max_tokens: int = 1000
    # Large answers judged at once (on threads): each holds its parsed body, up to about ten
    # times its size, and the checks hold the GIL, so more would only share the same core.
    judges: int = 2

    def __post_init__(self) -> None:
        if self.mode not in ("warn", "fail"):
            raise ValueError(f"mode must be warn or fail, not {self.mode!r}")
        if self.judges < 1:
            raise ValueError(f"judges must be at least 1, not {self.judges}")
        split = urlsplit(self.upstream)
        if split.scheme not in ("http", "https") or not split.netloc:
            raise ValueError(f"--upstream {self.upstream!r} is not an http(s) URL")


def _bare(app: Any) -> Any:
    return app


@dataclass(frozen=True)
class Serving:
    """How `run` serves the proxy under uvicorn: the HTTP protocol (a name, or the class with
    the server's limits), the ASGI layers around the proxy (the server's intake), more of
    uvicorn's settings, and a line for the banner. The composition root (`vpp_sandbox.cli`)
    builds it from the sandbox's own limits; the default is uvicorn as it comes."""

    http: Any = "auto"
    wrap: Callable[[Any], Any] = _bare
    config: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


def _now() -> str:
    moment = datetime.now(tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def error_body(code: str, message: str, live_mode: bool) -> bytes:
    """The proxy's own answers, in the Flatpeak error format."""
    return json.dumps({
        "object": "error",
        "type": "invalid_request" if code == "request_too_large" else "api_error",
        "code": code,
        "message": message,
        "context": CONTEXT,
        "live_mode": live_mode,
        "time_created": _now()[:19] + "Z",
    }).encode()


class ContractProxy:
    """The ASGI app. `transport` replaces the network (an in-process upstream in tests)."""

    def __init__(
        self,
        options: ProxyOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.options = options
        self.base = options.upstream.rstrip("/")
        self.transport = transport
        self.out = out if out is not None else sys.stdout
        self.ledger = ProxyLedger(options.max_participations, options.max_tokens)
        self.tally = Tally()
        self.started = time.monotonic()
        self._client: httpx.AsyncClient | None = None
        self._log: TextIO | None = None
        self._summary: str | None = None
        self._har = HarLog(options.har) if options.har else None
        # One lock per namespace in flight; a lock nobody holds or waits for is collected.
        self._locks: weakref.WeakValueDictionary[Hashable, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._judges: ThreadPoolExecutor | None = None
        # The large answers being read or judged, at most `judges` (one semaphore per loop:
        # tests run a proxy on several).
        self._large: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(self.options.timeout, connect=min(self.options.timeout, 10))
            self._client = httpx.AsyncClient(
                transport=self.transport, timeout=timeout, follow_redirects=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._judges is not None:
            self._judges.shutdown(wait=True)
            self._judges = None
        self.close_log()

    def _judging(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._large is None or self._large[0] is not loop:
            self._large = (loop, asyncio.Semaphore(self.options.judges))
        return self._large[1]

    def _pool(self) -> ThreadPoolExecutor:
        if self._judges is None:
            self._judges = ThreadPoolExecutor(self.options.judges, "vpp-proxy-judge")
        return self._judges

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._har is not None:
            self._har.close()

    def finish(self) -> str:
        """Write the JUnit report (if asked) and return the summary (once; then the same)."""
        if self._summary is None:
            self.tally.seconds = time.monotonic() - self.started
            self.close_log()
            if self.options.junit_xml:
                write_proxy_junit(self.tally, self.options.junit_xml)
            self._summary = self.tally.render(self.ledger.bounded_objects.evicted)
        return self._summary

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        # websockets are not part of the API: nothing to forward

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # The summary is written here: uvicorn re-raises SIGTERM once it has shut
                # down, so nothing after `uvicorn.run` would run.
                await self.aclose()
                print(self.finish(), file=self.out, flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.tally.exchanges += 1
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        plain = {k.lower(): v for k, v in headers}
        identity = self.ledger.identity_of(plain)  # the mode of the proxy's own answers only
        live = identity.live_mode if identity is not None else False
        try:
            body = await self._read_body(plain, receive)
        except _ClientLeft:
            self.tally.abandoned += 1  # nothing forwarded, and nobody to answer
            return
        if body is None:
            limit = self.options.max_body_bytes
            await _answer(send, 413, error_body(
                "request_too_large",
                f"The request body is larger than {limit} bytes, the limit of vpp-sandbox "
                "proxy (--max-body-bytes); it was not forwarded.",
                live,
            ))
            return
        lock = self._lock(self.ledger.namespace_of(plain))
        if lock is None:
            await self._exchange(scope, send, headers, body, identity)
            return
        try:
            # Waiting behind the namespace's earlier requests is bounded like the upstream.
            async with asyncio.timeout(self.options.timeout):
                await lock.acquire()
        except TimeoutError:
            self.tally.upstream_errors["timeout"] += 1
            await _answer(send, 504, error_body(
                "upstream_timeout",
                f"Earlier requests with this token still wait for {self.base} after "
                f"{self.options.timeout:g} s (vpp-sandbox proxy forwards them one at a time); "
                "retry the request.",
                live,
            ))
            return
        try:
            await self._exchange(scope, send, headers, body, identity)
        finally:
            lock.release()

    def _lock(self, namespace: Hashable | None) -> asyncio.Lock | None:
        if namespace is None:
            return None
        lock = self._locks.get(namespace)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[namespace] = lock
        return lock

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | None:
        """The whole body; None past the limit; `_ClientLeft` if the client left before it
        was whole (a part of a request is never forwarded)."""
        limit = self.options.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientLeft
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _forwarded(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The request's headers as sent upstream: no hop-by-hop ones (nor those Connection
        names), values without surrounding blanks (RFC 9110 §5.5: uvicorn keeps them, h11
        refuses to send them), Accept-Encoding narrowed to what the proxy decodes within its
        bound."""
        connection = {
            t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",")
        }
        out = []
        for name, value in headers:
            lower = name.lower()
            if lower in _NOT_FORWARDED or lower in connection:
                continue
            value = value.strip(" \t")
            out.append((name, accept_encoding(value) if lower == "accept-encoding" else value))
        return out

    async def _exchange(
        self,
        scope: Scope,
        send: Send,
        headers: list[tuple[str, str]],
        body: bytes,
        identity: Identity | None,
    ) -> None:
        live = identity.live_mode if identity is not None else False
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.base + raw_path + (f"?{query}" if query else "")
        what = f"{scope['method']} {scope['path']}"
        # No body and no length sent: send none either (httpx would add Content-Length: 0).
        sent_length = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers)
        content = body if body or sent_length else None
        started, began = _now(), time.monotonic()
        async with contextlib.AsyncExitStack() as large:
            try:
                request = httpx.Request(
                    scope["method"], url, headers=self._forwarded(headers), content=content
                )
                # httpx times each connect and read; the deadline bounds the whole exchange (a
                # slow drip of bytes, or an in-process upstream, which httpx does not time).
                async with asyncio.timeout(self.options.timeout):
                    status, answer_headers, answer = await self._forward(request, large)
            except Exception as exc:  # every way it can fail gets a clear answer
                kind, code, status, message = self._failure(exc, what)
                self.tally.upstream_errors[kind] += 1
                await _answer(send, status, error_body(code, message, live))
                return
            raw = answer.raw
            ms = (time.monotonic() - began) * 1000
            if self._har is not None:
                self._har.record(scope["method"], url, headers, body, status, answer_headers,
                                 raw, answer.decoded, started, ms)  # fmt: skip
            judge = functools.partial(
                self._verdict, scope, headers, body, status, answer_headers, answer, url
            )
            violations = await self._judged(what, judge, body, answer.size > INLINE_BYTES)
        if violations and self.options.mode == "fail":
            await self._withhold(send, status, violations, live)
            return
        out = [(k, v) for k, v in answer_headers if k.decode("latin-1").lower() not in HOP_BY_HOP]
        # The body is the upstream's, byte for byte: its Content-Length holds. A chunked answer
        # has none; it gets one (a HEAD's, a 204's and a 304's stay as they were).
        has_length = any(k.lower() == b"content-length" for k, _ in out)
        if not has_length and scope["method"] != "HEAD" and status not in (204, 304):
            out.append((b"content-length", str(len(raw)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": raw, "more_body": False})

    def _failure(self, exc: Exception, what: str) -> tuple[str, str, int, str]:
        """An exchange the upstream did not complete: its kind in the tally, and the proxy's
        answer (code, status, message)."""
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return "timeout", "upstream_timeout", 504, (
                f"{self.base} did not answer {what} within {self.options.timeout:g} s "
                "(vpp-sandbox proxy --timeout); retry the request."
            )
        if isinstance(exc, TooLarge):
            return "too large", "upstream_response_too_large", 502, (
                f"{self.base} answered {what} with more than {self.options.max_response_bytes} "
                "bytes (as sent or decoded), the limit of vpp-sandbox proxy "
                "(--max-response-bytes)."
            )
        if isinstance(exc, UnsupportedCoding):
            return "unsupported coding", "upstream_encoding_unsupported", 502, (
                f"{self.base} answered {what} in Content-Encoding {exc.coding}, which "
                "vpp-sandbox proxy cannot decode within its limit: it asks for gzip, deflate "
                "or identity only. Configure the upstream to honour Accept-Encoding."
            )
        if isinstance(exc, _BadStatus):
            return "invalid status", "upstream_status_invalid", 502, (
                f"{self.base} answered {what} with status {exc.status}, which is not a final "
                "HTTP status (200 to 599); vpp-sandbox proxy cannot pass it on. Fix the "
                "upstream's status code."
            )
        # Refused, reset, a bad URL.
        return "unreachable", "upstream_unreachable", 502, (
            f"vpp-sandbox proxy could not forward {what} to {self.base}: {type(exc).__name__}: "
            f"{exc}. Check --upstream and that the server is running."
        )

    async def _forward(
        self, request: httpx.Request, large: contextlib.AsyncExitStack
    ) -> tuple[int, RawHeaders, BoundedBody]:
        """Send upstream; the status, the raw headers and the body, bounded as sent and as
        decoded. Once the body is over INLINE_BYTES it waits for one of the `judges` places
        (held in `large` until it has been judged)."""
        response = await self.client().send(request, stream=True)
        try:
            if not 200 <= response.status_code <= 599:
                raise _BadStatus(response.status_code)
            answer = BoundedBody(
                response.headers.get("content-encoding", ""), self.options.max_response_bytes
            )
            waited = False
            async for chunk in response.aiter_raw():
                answer.feed(chunk)
                if answer.size > INLINE_BYTES and not waited:
                    await large.enter_async_context(self._judging())
                    waited = True
            answer.finish()
            if answer.size > INLINE_BYTES and not waited:  # the decoders' last bytes
                await large.enter_async_context(self._judging())
        finally:
            await response.aclose()
        return response.status_code, list(response.headers.raw), answer

    async def _judged(
        self, what: str, judge: Callable[[], tuple[Verdict, Exchange]], body: bytes, large: bool
    ) -> list[LogEntry]:
        """The exchange's violations, as logged; a large answer judged on a thread."""
        try:
            if large:
                loop = asyncio.get_running_loop()
                judged, exchange = await loop.run_in_executor(self._pool(), judge)
            else:
                judged, exchange = judge()
        except Exception as exc:  # a bug in a check must not cost the client its answer
            self.tally.check_errors += 1
            print(f"vpp-sandbox proxy: could not check {what}: {type(exc).__name__}: {exc}",
                  file=self.out, flush=True)  # fmt: skip
            return []
        self.tally.seen(judged.rules)
        # Advice (a choice the spec leaves open) never fails traffic, and is not logged.
        return [self._record(v, exchange, body) for v in judged.violations if not v.advice]

    # -- the checks --------------------------------------------------------------------------

    def _verdict(
        self,
        scope: Scope,
        headers: list[tuple[str, str]],
        body: bytes,
        status: int,
        answer_headers: list[tuple[bytes, bytes]],
        answer: BoundedBody,
        url: str,
    ) -> tuple[Verdict, Exchange]:
        """The suite's checks on one exchange (on the loop, or on a judge's thread: the ledger
        takes its own lock)."""
        content = answer.decoded
        if content is None:
            coding = dict((k.lower(), v) for k, v in answer_headers).get(b"content-encoding", b"")
            raise ValueError(f"the answer does not decode as its Content-Encoding "
                             f"{coding.decode('latin-1')} says: {answer.problem}")  # fmt: skip
        exchange = Exchange(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                 keep_blank_values=True)),
            headers=dict(headers),
            body=_parse(body),
            status=status,
            response_headers={k.decode("latin-1"): v.decode("latin-1")
                              for k, v in answer_headers},
            text=content.decode("utf-8", errors="replace"),
            url=url,
            data=_json(content),
        )
        # The suite's checks, on the suite's Ledger (which also forgets a namespace that the
        # sandbox's reset or world load emptied).
        judged = verdict(self.ledger, exchange, suite="proxy")
        obs = judged.observation
        # Oldest first (a page is newest first), so the newest are forgotten last.
        ids = [str(p.get("id")) for p in participations_in(exchange.data)][::-1]
        self.ledger.touch([*ids, *([obs.path_id] if obs.path_id else [])])
        return judged, exchange

    def _record(self, violation: Violation, exchange: Exchange, body: bytes) -> LogEntry:
        entry = LogEntry(_now(), violation, exchange, body, exchange.url)
        self.tally.add(entry)
        print(entry.line(), file=self.out, flush=True)
        if self.options.log:
            if self._log is None:
                self._log = open(self.options.log, "a", encoding="utf-8")  # noqa: SIM115
            self._log.write(dumps(entry) + "\n")
            self._log.flush()
        return entry

    async def _withhold(
        self, send: Send, status: int, violations: list[LogEntry], live: bool
    ) -> None:
        first = violations[0].violation
        more = len(violations) - 1
        message = (
            f"vpp-sandbox proxy withheld the upstream's {status} answer: it breaks "
            f"{first.heading} for participation {first.participation}: "
            f"{first.message.rstrip('.')}."
            + (f" ({more} more violation(s) in the proxy's log.)" if more else "")
            + " Fix the implementation, or run the proxy with --mode warn to pass such "
            "answers through."
        )
        await _answer(send, 502, error_body("contract_violation", message, live), extra=[
            (b"x-vpp-proxy", b"contract_violation"),
            (b"x-vpp-proxy-rule", first.rule.encode()),
            (b"x-vpp-proxy-check", first.check.encode()),
            (b"x-vpp-proxy-upstream-status", str(status).encode()),
        ])


class _ClientLeft(Exception):
    """The client went away before its request body was whole."""


class _BadStatus(Exception):
    """The upstream's status is not a final HTTP status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _json(raw: bytes) -> Any:
    """Parsed JSON, or None (as the suite's Exchange holds an answer that is not JSON).

    orjson first: about three times faster on a large answer, and a parse holds the GIL (the
    loop's, when it is judged on a thread). What it refuses and `json` reads (NaN, integers
    past 64 bits, lone surrogates) is read by `json`, so the checks see what the suite's do.
    """
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _parse(raw: bytes) -> Any:
    """A request body: parsed JSON, else its text (as the suite's Exchange holds it)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", errors="replace")


async def _answer(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """The proxy's own answer (marked `X-Vpp-Proxy`), never the upstream's."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or [(b"x-vpp-proxy", b"error")]),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def run(args: argparse.Namespace, serving: Serving | None = None) -> int:
    """Entry point of `vpp-sandbox proxy` (arguments parsed, and `serving` composed with the
    server's HTTP limits, in vpp_sandbox.cli)."""
    import uvicorn

    serving = serving or Serving()
    try:
        options = ProxyOptions(
            upstream=args.upstream,
            mode=args.mode,
            log=args.log,
            junit_xml=args.junit_xml,
            har=getattr(args, "har", None),
            max_body_bytes=args.max_body_bytes,
            max_response_bytes=args.max_response_bytes,
            timeout=args.timeout,
            max_participations=args.max_participations,
        )
    except ValueError as exc:
        print(f"vpp-sandbox proxy: {exc}", file=sys.stderr)
        return 2
    proxy = ContractProxy(options)
    print(
        f"vpp-sandbox proxy: http://{args.host}:{args.port} -> {proxy.base} · mode "
        f"{options.mode}" + (f" · violations to {options.log}" if options.log else ""),
        flush=True,
    )
    if serving.note:
        print(f"  {serving.note}", flush=True)
    # Ctrl-C: uvicorn re-raises it after its shutdown (the summary is already out).
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(
            serving.wrap(proxy),
            host=args.host,
            port=args.port,
            workers=1,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            # The upstream's own Date and Server headers pass through; uvicorn adds none.
            server_header=False,
            date_header=False,
            http=serving.http,
            **serving.config,
        )
    proxy.finish()  # already done at shutdown; written here if the server never started
    return 0 if not proxy.tally.violations else 1

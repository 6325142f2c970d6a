"""`vpp-sandbox proxy`: a reverse proxy that checks every exchange it forwards against the contract.

Put it between any client and any implementation (staging, the sandbox): it forwards each
request unchanged (method, path, query, headers but the hop-by-hop ones, body) and returns
the answer unchanged, and meanwhile judges it with `checks.verdict`, the suite's own
per-response checks: rules 1-15 (the cross-request ones, rule 15's pages included, with the
suite's Ledger, keyed by the token's namespace), §1, §2 (the response against the spec), §4,
§6 and §7. Their Violations are logged as they are, never re-read from a message. In `warn`
mode answers pass through and violations are logged; in `fail` mode a violating answer is
replaced by a 502 `contract_violation` in the Flatpeak error format.

Requests of one namespace (account and mode) are forwarded one at a time, so the ledger sees
them in the order the server handled them (a read that overtook a write would look stale);
other namespaces, and requests without a token, go in parallel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

import httpx

from vpp_sandbox.contract_tests.checks import verdict
from vpp_sandbox.contract_tests.findings import Violation
from vpp_sandbox.contract_tests.junit import write_proxy_junit
from vpp_sandbox.contract_tests.ledger import Identity, participations_in
from vpp_sandbox.contract_tests.proxy_ledger import ProxyLedger
from vpp_sandbox.contract_tests.proxy_report import LogEntry, Tally, dumps, redact_headers
from vpp_sandbox.contract_tests.target import Exchange

__all__ = ["ContractProxy", "ProxyOptions", "run"]

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


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """Where to forward, what to do with violations, and the bounds."""

    upstream: str
    mode: str = "warn"  # or "fail"
    log: str | None = None  # violation log, one JSON object a line
    junit_xml: str | None = None
    har: str | None = None  # every exchange, as a HAR 1.2 log written as the proxy goes
    max_body_bytes: int = 1024 * 1024  # requests larger than this are a 413, never forwarded
    max_response_bytes: int = 16 * 1024 * 1024  # larger answers are a 502
    timeout: float = 30.0  # seconds to wait for the upstream (a 504 after it)
    max_participations: int = 5000  # the ledger's memory (see proxy_ledger)
    max_tokens: int = 1000

    def __post_init__(self) -> None:
        if self.mode not in ("warn", "fail"):
            raise ValueError(f"mode must be warn or fail, not {self.mode!r}")
        split = urlsplit(self.upstream)
        if split.scheme not in ("http", "https") or not split.netloc:
            raise ValueError(f"--upstream {self.upstream!r} is not an http(s) URL")


def _now() -> str:
    moment = datetime.now(tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def error_body(code: str, message: str, live_mode: bool) -> bytes:
    """The proxy's own answers, in the Flatpeak error format."""
    return json.dumps({
        "object": "error",
        "type": "api_error" if code != "request_too_large" else "invalid_request",
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
        self._har: TextIO | None = None
        self._har_entries = 0
        # One lock per namespace in flight; a lock nobody holds or waits for is collected.
        self._locks: weakref.WeakValueDictionary[Identity, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

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
        self.close_log()

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._har is not None:
            self._har.write("\n]}}\n")
            self._har.close()
            self._har = None

    def _har_record(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes,
        status: int, answer_headers: RawHeaders, raw: bytes, started: str, ms: float,
    ) -> None:  # fmt: skip
        """One exchange into the HAR file (streamed: memory stays flat however long it runs),
        its secrets replaced by shell variables as in the violation log."""
        if self.options.har is None:
            return
        if self._har is None:
            self._har = open(self.options.har, "w", encoding="utf-8")  # noqa: SIM115
            creator = json.dumps({"name": "vpp-sandbox proxy", "version": "1"})
            self._har.write(f'{{"log": {{"version": "1.2", "creator": {creator}, "entries": [\n')
        answer = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer_headers]
        entry = {
            "startedDateTime": started,
            "time": round(ms, 3),
            "request": {
                "method": method, "url": url, "httpVersion": "HTTP/1.1", "cookies": [],
                "headers": _har_headers(headers),
                "queryString": [{"name": k, "value": v} for k, v in
                                parse_qsl(urlsplit(url).query, keep_blank_values=True)],
                "headersSize": -1, "bodySize": len(body),
                **({"postData": {"mimeType": "application/json",
                                 "text": body.decode("utf-8", "replace")}} if body else {}),
            },
            "response": {
                "status": status, "statusText": "", "httpVersion": "HTTP/1.1", "cookies": [],
                "headers": _har_headers(answer), "redirectURL": "",
                "content": {"size": len(raw), "mimeType": dict(
                    (k.lower(), v) for k, v in answer).get("content-type", ""),
                    "text": _har_text(raw)},
                "headersSize": -1, "bodySize": len(raw),
            },
            "cache": {},
            "timings": {"send": 0, "wait": round(ms, 3), "receive": 0},
        }  # fmt: skip
        self._har.write((",\n" if self._har_entries else "") + json.dumps(entry))
        self._har.flush()
        self._har_entries += 1

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
        identity = self.ledger.identity_of(plain)
        live = identity.live_mode if identity is not None else False
        body = await self._read_body(plain, receive)
        if body is None:
            limit = self.options.max_body_bytes
            await _answer(send, 413, error_body(
                "request_too_large",
                f"The request body is larger than {limit} bytes, the limit of vpp-sandbox "
                "proxy (--max-body-bytes); it was not forwarded.",
                live,
            ))
            return
        lock = self._lock(identity)
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
                f"Earlier requests of this account and mode still wait for {self.base} after "
                f"{self.options.timeout:g} s (vpp-sandbox proxy forwards them one at a time); "
                "retry the request.",
                live,
            ))
            return
        try:
            await self._exchange(scope, send, headers, body, identity)
        finally:
            lock.release()

    def _lock(self, identity: Identity | None) -> asyncio.Lock | None:
        if identity is None:
            return None
        lock = self._locks.get(identity)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[identity] = lock
        return lock

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | None:
        limit = self.options.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

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
        connection = {
            t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",")
        }
        # A field value has no leading or trailing whitespace (RFC 9110 §5.5); uvicorn keeps
        # it, h11 refuses to send it.
        forwarded = [
            (k, v.strip(" \t")) for k, v in headers if k.lower() not in _NOT_FORWARDED | connection
        ]
        # No body and no length sent: send none either (httpx would add Content-Length: 0).
        sent_length = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers)
        content = body if body or sent_length else None
        started, began = _now(), time.monotonic()
        try:
            request = httpx.Request(scope["method"], url, headers=forwarded, content=content)
            # httpx times each connect and read; the deadline bounds the whole exchange (a
            # slow drip of bytes, or an in-process upstream, which httpx does not time).
            async with asyncio.timeout(self.options.timeout):
                status, answer_headers, raw = await self._forward(request)
        except (httpx.TimeoutException, TimeoutError):
            self.tally.upstream_errors["timeout"] += 1
            await _answer(send, 504, error_body(
                "upstream_timeout",
                f"{self.base} did not answer {scope['method']} {scope['path']} within "
                f"{self.options.timeout:g} s (vpp-sandbox proxy --timeout); retry the request.",
                live,
            ))
            return
        except _TooLarge:
            self.tally.upstream_errors["too large"] += 1
            await _answer(send, 502, error_body(
                "upstream_response_too_large",
                f"{self.base} answered {scope['method']} {scope['path']} with more than "
                f"{self.options.max_response_bytes} bytes, the limit of vpp-sandbox proxy.",
                live,
            ))
            return
        except Exception as exc:  # refused, reset, a bad URL: the client gets a clear 502
            self.tally.upstream_errors["unreachable"] += 1
            await _answer(send, 502, error_body(
                "upstream_unreachable",
                f"vpp-sandbox proxy could not forward {scope['method']} {scope['path']} to "
                f"{self.base}: {type(exc).__name__}: {exc}. Check --upstream and that the "
                "server is running.",
                live,
            ))
            return
        self._har_record(scope["method"], url, headers, body, status, answer_headers, raw,
                         started, (time.monotonic() - began) * 1000)  # fmt: skip
        try:
            violations = self._check(scope, headers, body, status, answer_headers, raw, url)
        except Exception as exc:  # a bug in a check must not cost the client its answer
            self.tally.check_errors += 1
            print(f"vpp-sandbox proxy: could not check {scope['method']} {scope['path']}: "
                  f"{type(exc).__name__}: {exc}", file=self.out, flush=True)
            violations = []
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

    async def _forward(self, request: httpx.Request) -> tuple[int, RawHeaders, bytes]:
        """Send upstream; the status, raw headers and raw (still encoded) body."""
        response = await self.client().send(request, stream=True)
        try:
            chunks, size = [], 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self.options.max_response_bytes:
                    raise _TooLarge
                chunks.append(chunk)
        finally:
            await response.aclose()
        return response.status_code, list(response.headers.raw), b"".join(chunks)

    # -- the checks --------------------------------------------------------------------------

    def _check(
        self,
        scope: Scope,
        headers: list[tuple[str, str]],
        body: bytes,
        status: int,
        answer_headers: list[tuple[bytes, bytes]],
        raw: bytes,
        url: str,
    ) -> list[LogEntry]:
        method, path = scope["method"], scope["path"]
        # The body as the client library would read it (a Content-Encoding undone).
        content = httpx.Response(status, headers=answer_headers, content=raw).content
        exchange = Exchange(
            method=method,
            path=path,
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
        self.tally.seen(judged.rules)
        # Advice (a choice the spec leaves open) never fails traffic, and is not logged.
        return [self._record(v, exchange, body) for v in judged.violations if not v.advice]

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


class _TooLarge(Exception):
    """The upstream's answer is over max_response_bytes."""


def _har_text(raw: bytes) -> str:
    """An answer's body for the HAR file: a login's token replaced, as in the violation log."""
    data = _json(raw)
    if isinstance(data, dict) and isinstance(data.get("bearer_token"), str):
        return json.dumps({**data, "bearer_token": "$VPP_TOKEN"})
    return raw.decode("utf-8", "replace")


def _har_headers(headers: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in redact_headers(dict(headers)).items()]


def _json(raw: bytes) -> Any:
    """Parsed JSON, or None (as the suite's Exchange holds an answer that is not JSON)."""
    try:
        return json.loads(raw) if raw else None
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


def run(args: argparse.Namespace) -> int:
    """Entry point of `vpp-sandbox proxy` (arguments parsed in vpp_sandbox.cli)."""
    import uvicorn

    try:
        options = ProxyOptions(
            upstream=args.upstream,
            mode=args.mode,
            log=args.log,
            junit_xml=args.junit_xml,
            har=getattr(args, "har", None),
            max_body_bytes=args.max_body_bytes,
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
    # Ctrl-C: uvicorn re-raises it after its shutdown (the summary is already out).
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(
            proxy,
            host=args.host,
            port=args.port,
            workers=1,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            # The upstream's own Date and Server headers pass through; uvicorn adds none.
            server_header=False,
            date_header=False,
        )
    proxy.finish()  # already done at shutdown; written here if the server never started
    return 0 if not proxy.tally.violations else 1

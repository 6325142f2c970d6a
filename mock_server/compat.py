"""What uvicorn lacks, in one place: the connection limits a public server needs.

The one module of the package that reaches below a framework's documented surface. It adds to
uvicorn's HTTP protocol classes through their public methods and attributes (the asyncio
protocol, httptools' parser callbacks, h11's `Connection`, uvicorn's `send_400_response`), and
`check()` verifies at start-up that the installed uvicorn still has each of them, failing loudly
(`CompatError`) rather than serving without its limits. CI runs the check and the hostile-HTTP
tests on the newest uvicorn within our range (.ci/wheel_check.py).

uvicorn 0.54 runs no timer on a connection until its first response is complete, so a client
that connects and sends nothing, or sends its head a byte at a time (slowloris), holds the
connection forever; httptools (llhttp) has no limit on the size of a request head, and h11's
(`h11_max_incomplete_event_size`) is answered as a plain-text 400. The subclasses here add to
either implementation, chosen like uvicorn's `http="auto"`:

- an idle timeout: a new connection that sends no request within `idle_timeout` is closed;
- a head timeout: a request head not complete `header_timeout` seconds after its first byte
  is answered `408 request_timeout` and the connection closed;
- a head size limit: a request head still arriving past `max_header_bytes` is answered
  `431 request_header_too_large` and the connection closed, before more is buffered (a head
  that arrives whole in one read is measured by the intake middleware, with the same limit);
- a connection cap: a connection beyond `max_connections` is answered `503 server_busy`
  (`Retry-After: 1`) and closed;
- what is not HTTP at all: `400 request_malformed` in the error format, not uvicorn's text.

Between requests uvicorn's own `timeout_keep_alive` applies (`keep_alive_timeout`). What comes
after the head (header count, body size and read timeout, codings) is the intake middleware's
(`mock_server/intake.py`): there an error body can carry the caller's namespace and clock.

`vpp-sandbox proxy` is served with the same classes: the CLI gives them the proxy's `Limits`
(its settings, its error context), so nothing here knows the sandbox's Settings but `of()`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar

from vpp_sandbox.mock_server.errors import error_body, status_of

if TYPE_CHECKING:
    from vpp_sandbox.mock_server.settings import Settings

__all__ = ["CompatError", "Guard", "Limits", "check", "implementation", "protocol_class"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The protocol-level limits of one server: the sandbox's (`of(settings)`), or any other
    server's that serves with them (`vpp-sandbox proxy`, composed in the CLI)."""

    max_header_bytes: int
    header_timeout: float
    idle_timeout: float
    max_connections: int
    http: str = "auto"  # auto, httptools or h11
    context: str = "api"  # the `context` of the error objects answered here
    server: str = "The sandbox"  # who is busy, in the 503's message

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            idle_timeout=settings.idle_timeout,
            max_connections=settings.max_connections,
            http=settings.http,
        )


def implementation(http: str) -> str:
    """`httptools` or `h11`: the one asked for, or (auto) httptools when it is installed."""
    if http != "auto":
        return http
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def error_response(
    code: str,
    message: str,
    default_headers: list[tuple[bytes, bytes]],
    extra: str = "",
    context: str = "api",
) -> bytes:
    """A whole HTTP/1.1 response carrying the error object; the connection closes after it.

    Written before any request reached the app: no token was read, so test mode, real time.
    """
    body = error_body(code, message, context=context, live_mode=False, now=datetime.now(UTC))
    payload = json.dumps(body).encode()
    status = status_of(code)
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(payload)).encode(),
        b"connection: close",
    ]
    if extra:
        lines.append(extra.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


class Guard:
    """The limits, shared by both implementations; the subclass says when a head is open.

    Its own names start with `guard_` so they can never shadow one of uvicorn's.
    """

    limits: ClassVar[Limits]
    # uvicorn's protocol attributes the guard uses (set by the protocol it is mixed into);
    # `check()` verifies they exist on the installed uvicorn.
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    cycle: Any
    server_state: Any

    guard_timer: asyncio.TimerHandle | None = None
    guard_head_open = False
    guard_head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.limits.max_connections:
            self.guard_refuse(
                "server_busy",
                f"{self.limits.server} has {self.limits.max_connections} connections open, "
                "its limit; retry after a second, and close connections you no longer use.",
                extra="retry-after: 1",
            )
            return
        self.guard_set_timer(self.limits.idle_timeout, self.guard_idle_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard_cancel_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    # -- the head's life -------------------------------------------------------------------------

    def guard_head_began(self) -> None:
        self.guard_head_open = True
        self.guard_head_bytes = 0
        self.guard_set_timer(self.limits.header_timeout, self.guard_head_expired)

    def guard_head_done(self) -> None:
        self.guard_head_open = False
        self.guard_head_bytes = 0
        self.guard_cancel_timer()

    def guard_head_pending(self) -> bool:
        """Whether a request head is still arriving (checked again when its timer fires)."""
        return self.guard_head_open

    def guard_check_head_size(self, size: int) -> None:
        if size > self.limits.max_header_bytes:
            self.guard_refuse(
                "request_header_too_large",
                f"The request line and headers are over {self.limits.max_header_bytes} bytes; "
                "send fewer or shorter headers (cookies included).",
            )

    # -- timers ----------------------------------------------------------------------------------

    def guard_set_timer(self, seconds: float, callback: Any) -> None:
        self.guard_cancel_timer()
        self.guard_timer = self.loop.call_later(seconds, callback)

    def guard_cancel_timer(self) -> None:
        if self.guard_timer is not None:
            self.guard_timer.cancel()
            self.guard_timer = None

    def guard_idle_expired(self) -> None:
        self.guard_timer = None
        if not self.guard_head_pending():
            # Nothing was asked: there is no request to answer (and an answer could be read
            # as the response to a request still on its way).
            self.transport.close()
            return
        self.guard_head_expired()

    def guard_head_expired(self) -> None:
        self.guard_timer = None
        if not self.guard_head_pending():
            return
        self.guard_refuse(
            "request_timeout",
            f"The request head did not arrive within {self.limits.header_timeout:g} seconds; "
            "send the request line and headers at once.",
        )

    # -- answers ---------------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP, in the error format (431 when too big)."""
        if self.guard_head_bytes > self.limits.max_header_bytes:
            self.guard_check_head_size(self.guard_head_bytes)
            return
        self.guard_refuse(
            "request_malformed",
            "The request is not valid HTTP/1.1 (request line, header fields, Content-Length or "
            "Transfer-Encoding); send it with an HTTP client.",
        )

    def guard_refuse(self, code: str, message: str, extra: str = "") -> None:
        """Answer with the error object and close; only close while a response is under way."""
        self.guard_cancel_timer()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            defaults = list(getattr(self.server_state, "default_headers", []))
            self.transport.write(
                error_response(code, message, defaults, extra, self.limits.context)
            )
        self.transport.close()


def _httptools_base() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    base: type[asyncio.Protocol] = HttpToolsProtocol
    return base


def _h11_base() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    base: type[asyncio.Protocol] = H11Protocol
    return base


def _httptools_class(limits: Limits) -> type[asyncio.Protocol]:
    base: Any = _httptools_base()

    class GuardedHttpToolsProtocol(Guard, base):  # type: ignore[misc, valid-type]
        """httptools parses in callbacks: a head opens at message begin, closes when complete.

        llhttp keeps an unfinished header itself, so its size is counted from the bytes fed
        while the head is open; a chunk in which one message ended and the next began counts
        only from the next chunk on (at most one read of slack).
        """

        guard_ended_in_feed = False

        def data_received(self, data: bytes) -> None:
            open_before = self.guard_head_open
            self.guard_ended_in_feed = False
            super().data_received(data)
            if not self.guard_head_open or self.transport.is_closing():
                return
            if open_before or not self.guard_ended_in_feed:
                self.guard_head_bytes += len(data)
            self.guard_check_head_size(self.guard_head_bytes)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.guard_head_began()

        def on_headers_complete(self) -> None:
            self.guard_head_done()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.guard_ended_in_feed = True
            super().on_message_complete()

    GuardedHttpToolsProtocol.limits = limits
    return GuardedHttpToolsProtocol


def _h11_class(limits: Limits) -> type[asyncio.Protocol]:
    import h11

    base: Any = _h11_base()

    class GuardedH11Protocol(Guard, base):  # type: ignore[misc, valid-type]
        """h11 keeps a head in its buffer until it is whole (`Connection.trailing_data`, its
        public view of what it holds): its size is exact.

        h11 raises at `h11_max_incomplete_event_size` (set to the same limit by `serve`);
        uvicorn then calls `send_400_response`, answered here as a 431.
        """

        def guard_buffered(self) -> int:
            return len(self.conn.trailing_data[0])

        def guard_head_pending(self) -> bool:
            return self.conn.their_state is not h11.SEND_BODY and self.guard_buffered() > 0

        def data_received(self, data: bytes) -> None:
            if not self.guard_head_open and self.conn.their_state is not h11.SEND_BODY:
                self.guard_head_began()
            # What h11 will hold if this completes no head: `send_400_response` reads it when
            # h11 refuses a buffer over its limit.
            self.guard_head_bytes = self.guard_buffered() + len(data)
            super().data_received(data)
            if self.transport.is_closing():
                return
            if self.guard_head_pending():
                self.guard_head_bytes = self.guard_buffered()
                self.guard_check_head_size(self.guard_head_bytes)
            else:
                self.guard_head_done()

    GuardedH11Protocol.limits = limits
    return GuardedH11Protocol


class CompatError(RuntimeError):
    """The installed uvicorn (or h11) lacks what the connection limits are built on."""


# What each implementation must have: methods of the class, attributes of an instance.
_METHODS = {
    "httptools": ("connection_made", "connection_lost", "data_received", "send_400_response",
                  "on_message_begin", "on_headers_complete", "on_message_complete"),
    "h11": ("connection_made", "connection_lost", "data_received", "send_400_response"),
}
_ATTRIBUTES = ("loop", "connections", "cycle", "server_state")


def check(http: str) -> str:
    """Verify, before serving, that uvicorn still has what the limits are built on; the name
    of the implementation `http` (auto, httptools, h11) picks, or `CompatError` saying what is
    missing and what to do."""
    name = implementation(http)
    base = _httptools_base() if name == "httptools" else _h11_base()
    missing = [m for m in _METHODS[name] if not callable(getattr(base, m, None))]
    if not missing:
        import uvicorn
        from uvicorn.server import ServerState

        config = uvicorn.Config(app=_no_app, http=base, lifespan="off")
        loop = asyncio.new_event_loop()
        try:
            protocol = base(config, ServerState(), {}, loop)  # type: ignore[call-arg]
        finally:
            loop.close()
        missing = [a for a in _ATTRIBUTES if not hasattr(protocol, a)]
        if name == "h11":
            conn = getattr(protocol, "conn", None)
            trailing = getattr(conn, "trailing_data", None)
            if not (isinstance(trailing, tuple) and hasattr(conn, "their_state")):
                missing.append("conn.trailing_data / conn.their_state (h11)")
    if missing:
        from importlib.metadata import version

        raise CompatError(
            f"uvicorn {version('uvicorn')} ({name}) lacks {', '.join(missing)}, on which "
            "vpp-sandbox's connection limits (head size and time, idle connections, the "
            "connection cap) are built (mock_server/compat.py). Install a uvicorn within the "
            "range vpp-sandbox declares (pip install 'uvicorn>=0.30,<1'), or report it."
        )
    return name


async def _no_app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    pass


def protocol_class(limits: Limits) -> type[asyncio.Protocol]:
    """The class for uvicorn's `http=`: the limits' implementation with the limits added."""
    if implementation(limits.http) == "httptools":
        return _httptools_class(limits)
    return _h11_class(limits)


def __getattr__(name: str) -> Any:
    """`WorkerProtocol`: the class for each process of `serve --workers N`.

    uvicorn hands its worker processes the name of the protocol class, not the class (a class
    made here cannot travel to another process); each worker builds it from the settings the
    `serve` process exported for them.
    """
    if name == "WorkerProtocol":
        from vpp_sandbox.mock_server.settings import Settings

        return protocol_class(Limits.of(Settings.for_worker()))
    raise AttributeError(name)

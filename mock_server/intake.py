"""The request intake: what is checked once a request's head is in, before Connexion sees it.

In this order, each raised as an `ApiError` that the one error renderer answers (with the
caller's namespace and clock):

- more header fields than `max_headers`, or a head over `max_header_bytes` that arrived in one
  read (431; heads still arriving are the protocol's, `mock_server/compat.py`);
- a trailing slash on an API path: answered as the path without it (not a bare 307);
- both Content-Length and Transfer-Encoding (400), a Content-Length that is not a number (400);
- a body in a content coding (415: only identity is read) or in a charset other than UTF-8
  (415, naming it);
- a Content-Length over `max_body_bytes` (413, before reading);
- then the body, read whole within `body_timeout` seconds (408: a Content-Length larger than
  the body, or a slow client) and within `max_body_bytes` (413, also for chunked bodies).

The body is handed on with its true Content-Length and without Transfer-Encoding, so a
chunked body is validated like any other; a client that leaves before its body is whole has
nothing handed on.

`vpp-sandbox proxy` is served with the same intake (composed in the CLI): without the
trailing-slash rule and the media checks (codings and charsets are the upstream's to judge),
its refusals answered by `Refusals`, as the sandbox's are by its one error renderer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpp_sandbox.mock_server.errors import ApiError, error_body, status_of

__all__ = ["IntakeMiddleware", "Refusals", "charset_of", "replay"]

# An error answered here may leave part of the request on the wire: the connection closes.
CLOSE = {"Connection": "close"}

# What a JSON body may be encoded in: UTF-8, or ASCII (a subset of it).
_UTF8 = frozenset({"utf8", "ascii", "usascii"})

Match = Callable[[str], Any]


def charset_of(content_type: str) -> str | None:
    """The `charset` parameter of a Content-Type (RFC 9110 syntax: spaces, case, quotes)."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').strip()
    return None


class IntakeMiddleware:
    """Checks and reads a request before the app; the app gets the whole body at once."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_headers: int,
        max_header_bytes: int,
        body_timeout: float,
        route_of: Match | None = None,
        media: bool = True,
    ) -> None:
        self.app = app
        self.limit = max_body_bytes
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout
        self.route_of = route_of  # None: no path loses its trailing slash
        self.media = media  # False: codings and charsets are passed on unjudged

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        if len(raw) > self.max_headers:
            raise ApiError(
                "request_header_too_large",
                f"The request has {len(raw)} header fields; send at most {self.max_headers}.",
                CLOSE,
            )
        # A head that arrived whole in one read is not measured by the protocol (it only sees
        # heads still arriving): measured here, as sent (request line, `name: value` lines).
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 16
        size += sum(len(name) + len(value) + 4 for name, value in raw)
        if size > self.max_header_bytes:
            raise ApiError(
                "request_header_too_large",
                f"The request line and headers are over {self.max_header_bytes} bytes; send "
                "fewer or shorter headers (cookies included).",
                CLOSE,
            )
        scope = self._without_trailing_slash(scope)
        headers: dict[bytes, bytes] = {}
        for name, value in raw:
            headers.setdefault(name.lower(), value)
        declared = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if chunked and declared is not None:
            # Two framings (request smuggling's shape): httptools refuses it while parsing,
            # h11 would read the chunks; refused here for both.
            raise ApiError(
                "request_malformed",
                "The request has both Content-Length and Transfer-Encoding; send one of them "
                "(let your HTTP client frame the body).",
                CLOSE,
            )
        if declared is not None and not declared.strip().isdigit():
            raise ApiError(
                "invalid_request_body",
                "The Content-Length header is not a number; let your HTTP client set it.",
                CLOSE,
            )
        has_body = chunked or (declared is not None and int(declared) > 0)
        if not has_body:  # HTTP/1.1: no Content-Length and no Transfer-Encoding, no body
            await self.app(scope, receive, send)
            return
        refusal = self._refuse_encoding(headers) if self.media else None
        if refusal is not None:
            raise ApiError("unsupported_media_type", refusal, CLOSE)
        if declared is not None and int(declared) > self.limit:
            raise self._too_large()
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await self._read(receive)
        except TimeoutError:
            raise ApiError(
                "request_timeout",
                f"The request body did not arrive within {self.body_timeout:g} seconds of its "
                "headers; check that Content-Length is the body's size in bytes, and send the "
                "body at once.",
                CLOSE,
            ) from None
        if body is None:
            return  # the client went away: nobody to answer
        if len(body) > self.limit:
            raise self._too_large()
        if chunked or int(declared or 0) != len(body):
            scope = self._with_length(scope, len(body))
        await self.app(scope, replay(body, receive), send)

    def _without_trailing_slash(self, scope: Scope) -> Scope:
        """`/vpp-participations/` is `/vpp-participations` (a 307 with no body helps nobody)."""
        path: str = scope["path"]
        stripped = path.rstrip("/")
        if len(path) < 2 or stripped == path or not stripped or self.route_of is None:
            return scope
        if self.route_of(stripped) is None:
            return scope  # not an API route (the Swagger UI's /ui/ keeps its slash)
        scope = dict(scope)
        scope["path"] = stripped
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes):
            scope["raw_path"] = raw_path.rstrip(b"/")
        return scope

    @staticmethod
    def _refuse_encoding(headers: dict[bytes, bytes]) -> str | None:
        """Why a body cannot be read as sent (a content coding, a charset), or None."""
        coding = headers.get(b"content-encoding", b"").decode("latin-1").strip().lower()
        if coding and coding != "identity":
            return (
                f"Content-Encoding {coding} is not supported: send the body uncompressed as "
                "JSON (no Content-Encoding header)."
            )
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        charset = charset_of(content_type)
        if charset is not None:
            normal = charset.lower().replace("-", "").replace("_", "")
            if normal not in _UTF8:
                return (
                    f"charset={charset} is not supported: JSON bodies are UTF-8. Encode the "
                    "body as UTF-8 and send Content-Type: application/json."
                )
        return None

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body (stopping early past the limit), or None if the client left."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > self.limit:
                break
            more = message.get("more_body", False)
        return b"".join(chunks)

    @staticmethod
    def _with_length(scope: Scope, length: int) -> Scope:
        scope = dict(scope)
        scope["headers"] = [
            (name, value)
            for name, value in scope["headers"]
            if name.lower() not in (b"content-length", b"transfer-encoding")
        ] + [(b"content-length", str(length).encode())]
        return scope

    def _too_large(self) -> ApiError:
        return ApiError(
            "request_too_large",
            f"The request body is larger than {self.limit} bytes; send a smaller body.",
            CLOSE,
        )


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the whole body at once, then what the server says next."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class Refusals:
    """The intake's refusals as error objects, for a server without the sandbox's pipeline
    (`vpp-sandbox proxy`): written before any token was read, so test mode and real time."""

    def __init__(
        self, app: ASGIApp, *, context: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.app = app
        self.context = context
        self.headers = dict(headers or {})  # added to every refusal (a marker of the server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ApiError as exc:  # raised by the intake, before the app below answered
            body = error_body(
                exc.code, exc.message, context=self.context, live_mode=False,
                now=datetime.now(UTC),
            )  # fmt: skip
            payload = json.dumps(body).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *((k.lower().encode("latin-1"), v.encode("latin-1"))
                  for k, v in {**self.headers, **exc.headers}.items()),
            ]  # fmt: skip
            await send({"type": "http.response.start", "status": status_of(exc.code),
                        "headers": headers})  # fmt: skip
            await send({"type": "http.response.body", "body": payload, "more_body": False})

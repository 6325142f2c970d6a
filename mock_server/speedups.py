"""Per-request work Connexion 3.3 repeats that can be done once; same behaviour, less time.

Connexion decorates the handler again on every request (`AsyncOperation.fn` is a property that
builds a `StarletteDecorator`, whose wrapper calls `decorate()`, which inspects the handler's
signature), turns every argument name into its Python form with three regular expressions
per request, and matches media types (`MediaTypeDict`, several lookups a request) by sorting the
keys and running fnmatch each time. All depend only on the operation or the header, so they are
done once here. And every API request went through the Swagger UI's router (six routes per API)
before reaching the API: a path that cannot be one of the UI's now goes straight on. Handlers
without files still had every request's form parsed (empty) to find them: a request that is
not a form now has none, as Starlette would have said. Finding the Content-Type header (three
times a request) built a `typing` subscription on every call, and the handler's request a URI
parser. The patches are
written against Connexion 3.3.0 (pinned in constraints.txt); with any other version nothing is
patched and Connexion behaves (and costs) as it ships.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from fnmatch import fnmatch
from importlib.metadata import version
from typing import Any

from connexion import utils as connexion_utils
from connexion.apps.asynchronous import AsyncOperation
from connexion.context import _operation as current_operation
from connexion.context import receive, scope
from connexion.datastructures import MediaTypeDict
from connexion.decorators import main as decorators_main
from connexion.decorators import parameter as decorators_parameter
from connexion.http_facts import FORM_CONTENT_TYPES
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.types import Receive, Scope, Send

__all__ = ["install"]

PATCHED_VERSION = "3.3.0"
_installed = False
_MEDIA_MATCHES: dict[tuple[tuple[str, ...], str], str | None] = {}
_MEDIA_MATCHES_MAX = 4096  # Content-Type comes from clients: bounded
# Every route of the Swagger UI middleware: {base}/openapi.json|yaml, {base}/ui, {base}/ui/...
_UI_SUFFIXES = ("/openapi.json", "/openapi.yaml")


def extract_content_type(headers: Any) -> str | None:
    """`connexion.utils.extract_content_type` without the `typing` expression it evaluated per call.

    The same result: the first Content-Type header of ASGI (bytes) or str pairs, or of a dict.
    """
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, value in pairs:
        name = key.decode("latin-1") if isinstance(key, bytes) else key
        if name.lower() == "content-type":
            found: str = value.decode("latin-1") if isinstance(value, bytes) else value
            return found
    return None


def install() -> bool:
    """Apply the patches once per process; False if Connexion is not the version they fit."""
    global _installed
    if _installed:
        return True
    if version("connexion") != PATCHED_VERSION:
        return False
    decorated_fn = AsyncOperation.fn.fget

    def fn_once(self: AsyncOperation) -> Callable[..., Any]:
        # `fn` depends on the handler, pythonic_params and the jsonifier: all fixed per operation.
        cached: Callable[..., Any] | None = self.__dict__.get("_vpp_fn")
        if cached is None:
            cached = self.__dict__["_vpp_fn"] = decorated_fn(self)
        return cached

    def asgi_call(self: Any, function: Callable[..., Any]) -> Callable[..., Any]:
        # ASGIDecorator.__call__ with `decorate` moved out of the per-request wrapper; the
        # request still comes from the request's own context (scope, receive). Its URI parser
        # holds only the operation's parameter and body definitions: built once per operation.
        decorated = self.decorate(function)
        parsers: dict[int, tuple[Any, Any]] = {}  # id(operation) -> (operation, parser)

        @functools.wraps(function)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            current = current_operation.get()
            known = parsers.get(id(current))
            if known is None or known[0] is not current:
                known = parsers[id(current)] = (current, self.uri_parser)
            request = self.framework.get_request(
                uri_parser=known[1], scope=scope, receive=receive
            )
            return await decorated(request)

        return wrapper

    connexion_getitem = MediaTypeDict.__getitem__

    def media_type_getitem(self: MediaTypeDict, item: str) -> Any:
        # MediaTypeDict.__getitem__ with the choice of key remembered per (keys, media type).
        key = (tuple(self), item)
        if key in _MEDIA_MATCHES:
            matched = _MEDIA_MATCHES[key]
        else:
            ranked = sorted(self, key=lambda k: ("*" not in k, k), reverse=True)
            matched = next((k for k in ranked if fnmatch(item, k)), None)
            if len(_MEDIA_MATCHES) >= _MEDIA_MATCHES_MAX:
                _MEDIA_MATCHES.clear()
            _MEDIA_MATCHES[key] = matched
        if matched is None:
            return connexion_getitem(self, item)  # Connexion's KeyError
        return dict.__getitem__(self, matched)

    swagger_ui_call = SwaggerUIMiddleware.__call__

    async def swagger_ui_or_next(
        self: SwaggerUIMiddleware, scope: Scope, receive: Receive, send: Send
    ) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path and "/ui" not in path and not path.endswith(_UI_SUFFIXES):
            await self.app(scope, receive, send)  # what its router's default does
            return
        await swagger_ui_call(self, scope, receive, send)

    connexion_files = ConnexionRequest.files

    async def files(self: ConnexionRequest) -> Any:
        if self._files is None and self.mimetype not in FORM_CONTENT_TYPES:
            return {}  # Starlette's form() of anything but a form is empty
        return await connexion_files(self)

    ConnexionRequest.files = files  # type: ignore[method-assign]
    connexion_utils.extract_content_type = extract_content_type
    SwaggerUIMiddleware.__call__ = swagger_ui_or_next  # type: ignore[method-assign]
    MediaTypeDict.__getitem__ = media_type_getitem  # type: ignore[method-assign]
    AsyncOperation.fn = property(fn_once)  # type: ignore[method-assign,assignment]
    decorators_main.ASGIDecorator.__call__ = asgi_call  # type: ignore[method-assign]
    decorators_parameter.pythonic = functools.lru_cache(maxsize=4096)(
        decorators_parameter.pythonic
    )
    _installed = True
    return True

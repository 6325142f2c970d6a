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
parser. What Connexion's parameter decorator derived from the operation on every request
(the path and query parameter tables, the query defaults, the body's name and schema) is
derived once per operation (`ArgumentPlan`), a request without a query string has no query
parsed, whether the handler is a coroutine function is asked once, the URI parser's table of
parameter schemas is built once per parser (not once per parameter) and a string parameter is
not sent through an exception to be left as it is, and the handler's request
gets the request's own scope rather than a context proxy that every lookup went through. The
response validation middleware looked up the response's definition, schema and required
headers (and rebuilt the operation's media types) on every response: once per operation,
status and media type now (`middlewares()`, through Connexion's `middlewares` option, the one
step here that has a supported extension point). The patches are written against
Connexion 3.3.0 (pinned in constraints.txt); with any other version nothing is patched, the
middleware list is Connexion's own, and Connexion behaves (and costs) as it ships.
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import logging
import types
from collections.abc import Callable, MutableMapping
from copy import deepcopy
from fnmatch import fnmatch
from importlib.metadata import version
from typing import Any

from connexion import uri_parsing
from connexion import utils as connexion_utils
from connexion.apps.asynchronous import AsyncOperation
from connexion.context import _context as current_context
from connexion.context import _operation as current_operation
from connexion.context import _receive as current_receive
from connexion.context import _scope as current_scope
from connexion.context import context as context_proxy
from connexion.datastructures import MediaTypeDict
from connexion.decorators import main as decorators_main
from connexion.decorators import parameter as decorators_parameter
from connexion.decorators import response as decorators_response
from connexion.exceptions import NonConformingResponseHeaders
from connexion.http_facts import FORM_CONTENT_TYPES
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.main import ConnexionMiddleware
from connexion.middleware.response_validation import (
    ResponseValidationAPI,
    ResponseValidationMiddleware,
    ResponseValidationOperation,
)
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.operations import AbstractOperation, Swagger2Operation
from connexion.uri_parsing import AlwaysMultiURIParser, OpenAPIURIParser, Swagger2URIParser
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

__all__ = [
    "ORIGINALS",
    "ArgumentPlan",
    "PreparedResponseValidationMiddleware",
    "PreparedResponseValidationOperation",
    "enabled",
    "install",
    "middlewares",
]

PATCHED_VERSION = "3.3.0"
_installed = False
# What install() replaced, by name: the reference the patched versions are tested against.
ORIGINALS: dict[str, Any] = {}
_MEDIA_MATCHES: dict[tuple[tuple[str, ...], str], str | None] = {}
_MEDIA_MATCHES_MAX = 4096  # Content-Type comes from clients: bounded
# Every route of the Swagger UI middleware: {base}/openapi.json|yaml, {base}/ui, {base}/ui/...
_UI_SUFFIXES = ("/openapi.json", "/openapi.yaml")
_PER_CONTENT_TYPE_MAX = 256  # per operation; Content-Type comes from clients: bounded
_IMMUTABLE = (str, int, float, bool, type(None), bytes)
_URI_PARSERS = (OpenAPIURIParser, Swagger2URIParser, AlwaysMultiURIParser)
# The types connexion.utils.coerce_type converts (or walks); any other is returned as it is.
_COERCED_TYPES = frozenset({"integer", "number", "boolean", "array", "object"})
log = logging.getLogger("connexion.middleware.validation")


def enabled() -> bool:
    """True when Connexion is the version the patches were written against."""
    return version("connexion") == PATCHED_VERSION


def _bounded_get(
    cache: dict[str, Any], key: str, make: Callable[[str], Any]
) -> Any:
    if key in cache:
        return cache[key]
    if len(cache) >= _PER_CONTENT_TYPE_MAX:
        cache.clear()
    value = cache[key] = make(key)
    return value


class ArgumentPlan:
    """What `connexion.decorators.parameter.get_arguments` derives from the operation alone.

    `arguments()` gives the same result as `get_arguments(operation, ...)` for the same
    request values, through the same helper functions; only the tables are built once.
    """

    def __init__(self, operation: AbstractOperation, sanitize: Callable[[str], str]) -> None:
        self.operation = operation
        self.sanitize = sanitize
        self.path_definitions = {
            p["name"]: p for p in operation.parameters if p["in"] == "path"
        }
        self.query_definitions = {
            p["name"]: p for p in operation.parameters if p["in"] == "query"
        }
        self.query_defaults = decorators_parameter._get_query_defaults(self.query_definitions)
        # deepcopy of scalars is a copy of the dict: only nested values need the deep one.
        self.copy_defaults: Callable[[dict[str, Any]], dict[str, Any]] = (
            dict if all(type(v) in _IMMUTABLE for v in self.query_defaults.values())
            else deepcopy
        )
        self.trace = operation.method.upper() == "TRACE"
        self.swagger2 = isinstance(operation, Swagger2Operation)
        self._body_names: dict[str, str] = {}
        self._body_schemas: dict[str, Any] = {}

    def body_name(self, content_type: str) -> str:
        """`sanitize(operation.body_name(content_type))`."""
        return str(
            _bounded_get(
                self._body_names,
                content_type,
                lambda ct: self.sanitize(self.operation.body_name(ct)),
            )
        )

    def arguments(
        self,
        *,
        path_params: MutableMapping[str, Any],
        query_params: MutableMapping[str, Any],
        body: Any,
        files: dict[str, Any],
        arguments: list[str],
        has_kwargs: bool,
        content_type: str,
    ) -> dict[str, Any]:
        """`get_arguments(operation, ...)` with the operation's tables prepared."""
        sanitize = self.sanitize
        ret: dict[str, Any] = {}
        # _get_path_arguments
        for name, value in path_params.items():
            definition = self.path_definitions.get(name)
            ret[sanitize(name)] = (
                value
                if definition is None
                else decorators_parameter._get_val_from_param(value, definition)
            )
        # _get_query_arguments
        query_arguments = connexion_utils.deep_merge(
            self.copy_defaults(self.query_defaults), query_params
        )
        ret.update(
            decorators_parameter._query_args_helper(
                self.query_definitions, query_arguments, arguments, has_kwargs, sanitize
            )
        )
        if self.trace:
            return ret
        ret.update(
            decorators_parameter._get_body_argument(
                body,
                operation=self.operation,
                arguments=arguments,
                has_kwargs=has_kwargs,
                sanitize=sanitize,
                content_type=content_type,
            )
        )
        body_schema = _bounded_get(self._body_schemas, content_type, self.operation.body_schema)
        ret.update(
            decorators_parameter._get_file_arguments(files, arguments, body_schema, has_kwargs)
        )
        return ret


def _plan_for(
    plans: dict[int, ArgumentPlan], operation: AbstractOperation, sanitize: Callable[[str], str]
) -> ArgumentPlan:
    plan = plans.get(id(operation))
    if plan is None or plan.operation is not operation:
        plan = plans[id(operation)] = ArgumentPlan(operation, sanitize)
    return plan


def _parameter_call(self: Any, function: Callable[..., Any]) -> Callable[..., Any]:
    """`AsyncParameterDecorator.__call__` with the operation's tables prepared once.

    The same steps in the same order as Connexion's wrapper (`_maybe_get_body`, `files()`,
    `prep_kwargs`), on the real operation and context instead of their proxies.
    """
    unwrapped = decorators_parameter.unwrap_decorators(function)
    arguments, has_kwargs = connexion_utils.inspect_function_arguments(unwrapped)
    sanitize = self.sanitize_fn
    plans: dict[int, ArgumentPlan] = {}

    @functools.wraps(function)
    async def wrapper(request: ConnexionRequest) -> Any:
        operation = current_operation.get()
        plan = _plan_for(plans, operation, sanitize)
        # _maybe_get_body
        body_name = plan.body_name(request.content_type)
        if (body_name in arguments or has_kwargs) or (
            request.mimetype in FORM_CONTENT_TYPES and plan.swagger2
        ):
            request_body = request.get_body()
        else:
            request_body = None
        while asyncio.iscoroutine(request_body):
            request_body = await request_body
        files = await request.files()
        # prep_kwargs. Connexion's URI parsers resolve no query string to {}: not parsed.
        if request.scope.get("query_string") or type(request.uri_parser) not in _URI_PARSERS:
            query_params = request.query_params
        else:
            query_params = {}
        kwargs = plan.arguments(
            path_params=request.path_params,
            query_params=query_params,
            body=request_body,
            files=files,
            arguments=arguments,
            has_kwargs=has_kwargs,
            content_type=request.mimetype,
        )
        kwargs = {sanitize(k): v for k, v in kwargs.items()}
        for key, value in current_context.get().items():
            if has_kwargs or key in arguments:
                kwargs[key] = value
        if decorators_parameter.CONTEXT_NAME in arguments:
            kwargs[decorators_parameter.CONTEXT_NAME] = context_proxy
        return await function(**kwargs)

    return wrapper


_PRODUCES: dict[int, tuple[AbstractOperation, list[str]]] = {}


def _infer_content_type(data: Any, headers: dict[str, Any]) -> str | None:
    """`BaseResponseDecorator._infer_content_type` with the operation's `produces` as a list
    made once (Connexion made `list(set(...))` of it, through a proxy, on every response)."""
    content_type: str | None = connexion_utils.extract_content_type(headers)
    operation = current_operation.get()
    known = _PRODUCES.get(id(operation))
    if known is None or known[0] is not operation:
        known = _PRODUCES[id(operation)] = (operation, list(set(operation.produces)))
    produces = known[1]
    if data is not None and not produces:
        produces = ["application/json"]
    if content_type:
        if content_type not in produces:
            raise NonConformingResponseHeaders(
                f"Returned content type ({content_type}) is not defined in operation spec "
                f"({operation.produces})."
            )
    elif not produces:
        pass
    elif len(produces) == 1:
        content_type = produces[0]
    else:
        if isinstance(data, str):
            for produced in produces:
                if "text/plain" in produced:
                    content_type = produced
        elif isinstance(data, bytes | types.GeneratorType | collections.abc.Iterator):
            for produced in produces:
                if "application/octet-stream" in produced:
                    content_type = produced
        if content_type is None:
            raise NonConformingResponseHeaders(
                "Multiple response content types are defined in the operation spec, but "
                "the handler response did not specify which one to return."
            )
    return content_type


# -- response validation, prepared once per operation, status and media type -----------------


class _ResponsePlan:
    __slots__ = ("nullable", "required_headers", "schema", "validator")

    def __init__(
        self, required_headers: frozenset[str], validator: Any, schema: Any, nullable: bool
    ) -> None:
        self.required_headers = required_headers
        self.validator = validator
        self.schema = schema
        self.nullable = nullable


class PreparedResponseValidationOperation(ResponseValidationOperation):  # type: ignore[misc]
    """Connexion's response validation with what depends only on the operation, the status
    and the media type looked up once: the same checks, the same errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        produces = self._operation.produces
        self._produces = MediaTypeDict([(p.lower(), None) for p in produces]) if produces else None
        self._plans: dict[tuple[str, str], _ResponsePlan] = {}

    def validate_mime_type(self, mime_type: str) -> None:
        if self._produces is not None and mime_type.lower() not in self._produces:
            raise NonConformingResponseHeaders(
                detail=f"Invalid Response Content-type ({mime_type}), "
                f"expected {self._operation.produces}",
            )

    def _plan(self, status: str, mime_type: str) -> _ResponsePlan:
        key = (status, mime_type)
        plan = self._plans.get(key)
        if plan is None:
            definition = self._operation.response_definition(status, mime_type)
            required = frozenset(
                k.lower() for k, v in definition.get("headers", {}).items()
                if v.get("required", False)
            )
            try:
                validator = self._validator_map["response"][mime_type]
            except KeyError:
                validator = None
            plan = _ResponsePlan(
                required,
                validator,
                self._operation.response_schema(status, mime_type),
                connexion_utils.is_nullable(definition),
            )
            if len(self._plans) >= _PER_CONTENT_TYPE_MAX:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped_send(message: MutableMapping[str, Any]) -> None:
            nonlocal send
            if message["type"] == "http.response.start":
                headers = message["headers"]
                mime_type, encoding = self.extract_content_type(headers)
                if message["status"] < 400:
                    self.validate_mime_type(mime_type)
                plan = self._plan(str(message["status"]), mime_type)
                if plan.required_headers:
                    # validate_required_headers, with the required set built once
                    present = {h[0].decode("latin-1").lower() for h in headers}
                    missing = plan.required_headers - present
                    if missing:
                        raise NonConformingResponseHeaders(
                            detail="Keys in response header don't match response "
                            f"specification. Difference: {', '.join(missing)}"
                        )
                if plan.validator is None:
                    log.info(
                        "Skipping validation. No validator registered for content type: "
                        f"{mime_type}."
                    )
                else:
                    validator = plan.validator(
                        scope, schema=plan.schema, nullable=plan.nullable, encoding=encoding
                    )
                    send = validator.wrap_send(send)
            return await send(message)

        await self.next_app(scope, receive, wrapped_send)


class _PreparedResponseValidationAPI(ResponseValidationAPI):  # type: ignore[misc]
    def make_operation(self, operation: AbstractOperation) -> Any:
        if self.validate_responses:
            return PreparedResponseValidationOperation(
                self.next_app, operation=operation, validator_map=self.validator_map
            )
        return self.next_app


class PreparedResponseValidationMiddleware(ResponseValidationMiddleware):  # type: ignore[misc]
    """Connexion's response validation middleware with `PreparedResponseValidationOperation`."""

    api_cls = _PreparedResponseValidationAPI


def middlewares() -> list[Any]:
    """Connexion's default middleware list for `AsyncApp(middlewares=...)`; on 3.3.0 with
    response validation prepared once per operation, status and media type."""
    stack = list(ConnexionMiddleware.default_middlewares)
    if not enabled():
        return stack
    return [
        PreparedResponseValidationMiddleware if m is ResponseValidationMiddleware else m
        for m in stack
    ]


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
    if not enabled():
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
        # request still comes from the request's own context (scope, receive), read from the
        # context variables themselves: the proxies Connexion passes cost a lookup on every
        # access to the scope. Its URI parser holds only the operation's parameter and body
        # definitions: built once per operation.
        decorated = self.decorate(function)
        parsers: dict[int, tuple[Any, Any]] = {}  # id(operation) -> (operation, parser)

        @functools.wraps(function)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            current = current_operation.get()
            known = parsers.get(id(current))
            if known is None or known[0] is not current:
                known = parsers[id(current)] = (current, self.uri_parser)
            request = self.framework.get_request(
                uri_parser=known[1], scope=current_scope.get(), receive=current_receive.get()
            )
            return await decorated(request)

        return wrapper

    def sync_async_decorator(self: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        # ASGIDecorator._sync_async_decorator asked whether the handler is a coroutine
        # function on every request; the answer is the handler's, fixed: asked once.
        def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
            if asyncio.iscoroutinefunction(function):

                @functools.wraps(function)
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    return await function(*args, **kwargs)

            else:

                @functools.wraps(function)
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    return await run_in_threadpool(function, *args, **kwargs)

            return wrapper

        return decorator

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

    connexion_coerce_type = connexion_utils.coerce_type

    def coerce_type(
        param: dict[str, Any], value: Any, parameter_type: str, parameter_name: Any = None
    ) -> Any:
        # For a type it has no converter for (string, or none given), Connexion called None
        # and caught the TypeError to return the value: what is returned here at once.
        schema = param.get("schema", param)
        if schema.get("type") not in _COERCED_TYPES and not (
            connexion_utils.is_nullable(schema) and connexion_utils.is_null(value)
        ):
            return value
        return connexion_coerce_type(param, value, parameter_type, parameter_name)

    connexion_param_schemas = OpenAPIURIParser.param_schemas.fget

    def param_schemas(self: OpenAPIURIParser) -> dict[str, Any]:
        # A property that rebuilt its dict on every access, once per parameter of every
        # request; it depends only on the definitions the parser was made with. Connexion only
        # reads it (get, keys).
        cached = self.__dict__.get("_vpp_param_schemas")
        if cached is None or cached[0] is not self._param_defns:
            cached = self.__dict__["_vpp_param_schemas"] = (
                self._param_defns,
                connexion_param_schemas(self),
            )
        schemas: dict[str, Any] = cached[1]
        return schemas

    connexion_files = ConnexionRequest.files

    async def files(self: ConnexionRequest) -> Any:
        if self._files is None and self.mimetype not in FORM_CONTENT_TYPES:
            return {}  # Starlette's form() of anything but a form is empty
        return await connexion_files(self)

    ORIGINALS["parameter_call"] = decorators_parameter.AsyncParameterDecorator.__call__
    ORIGINALS["sync_async_decorator"] = decorators_main.ASGIDecorator._sync_async_decorator.fget
    ORIGINALS["infer_content_type"] = decorators_response.BaseResponseDecorator.__dict__[
        "_infer_content_type"
    ].__func__
    ORIGINALS["param_schemas"] = connexion_param_schemas
    ORIGINALS["coerce_type"] = connexion_coerce_type
    uri_parsing.coerce_type = coerce_type
    OpenAPIURIParser.param_schemas = property(param_schemas)  # type: ignore[method-assign,assignment]
    ConnexionRequest.files = files  # type: ignore[method-assign]
    connexion_utils.extract_content_type = extract_content_type
    SwaggerUIMiddleware.__call__ = swagger_ui_or_next  # type: ignore[method-assign]
    MediaTypeDict.__getitem__ = media_type_getitem  # type: ignore[method-assign]
    AsyncOperation.fn = property(fn_once)  # type: ignore[method-assign,assignment]
    decorators_main.ASGIDecorator.__call__ = asgi_call  # type: ignore[method-assign]
    decorators_main.ASGIDecorator._sync_async_decorator = property(  # type: ignore[method-assign,assignment]
        sync_async_decorator
    )
    decorators_parameter.AsyncParameterDecorator.__call__ = _parameter_call  # type: ignore[method-assign]
    decorators_response.BaseResponseDecorator._infer_content_type = staticmethod(  # type: ignore[method-assign]
        _infer_content_type
    )
    decorators_parameter.pythonic = functools.lru_cache(maxsize=4096)(
        decorators_parameter.pythonic
    )
    _installed = True
    return True

"""The app inside Connexion's middleware: each operation's handler, its answer checked and sent.

Connexion's routing names the operation (`request.operation_of`); the table built here at
start-up from the specs gives its handler (by the one resolver convention: operationId
`createVppParticipation` -> `create_vpp_participation`) and the checks of its answers. A
request that no operation matched goes to `SpecPages`: the specs as JSON or YAML, Swagger UI,
or a 404/405 in the error format.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import inflection
import orjson
import yaml
from connexion.json_schema import resolve_refs
from connexion.resolver import Resolver
from starlette.types import ASGIApp, Receive, Scope, Send

from vpp_sandbox import openapi
from vpp_sandbox.mock_server.encoding import dumps, shape_of
from vpp_sandbox.mock_server.request import facts_of, routed
from vpp_sandbox.mock_server.validation import ResponseCheck

__all__ = ["Api", "Endpoints", "Operation", "SnakeCaseResolver", "SpecPages", "operations"]

log = logging.getLogger("vpp_sandbox.mock_server")

Handler = Callable[..., Awaitable[Any]]
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def handler_name(operation_id: str) -> str:
    """The one resolver convention: operationId `createVppParticipation` ->
    `create_vpp_participation`."""
    return str(inflection.underscore(operation_id))


class SnakeCaseResolver(Resolver):  # type: ignore[misc]
    """Connexion's resolver for an API whose handlers are the methods of `handlers`.

    Connexion resolves every operation when it builds its middleware (so a missing handler
    fails at start-up); the endpoints below call the same methods.
    """

    def __init__(self, handlers: object) -> None:
        self.handlers = handlers
        super().__init__(function_resolver=self.function)

    def function(self, operation_id: str) -> Handler:
        found: Handler = getattr(self.handlers, handler_name(operation_id))
        return found

    def resolve_operation_id(self, operation: Any) -> str:
        return str(operation.operation_id)  # the spec's own ids, no module path in them


@dataclass
class Api:
    """One API of the app: its spec (`openapi.CONTRACT` or `openapi.CONTROL`), where it is
    served, and the object whose methods handle its operations."""

    name: str
    base_path: str
    handlers: object
    spec: dict[str, Any] = field(init=False)  # as loaded, $refs and all

    def __post_init__(self) -> None:
        self.spec = openapi.load(self.name)


@dataclass(frozen=True, slots=True)
class Operation:
    """What the endpoints need of one operation, prepared once."""

    operation_id: str
    handler: Handler
    has_body: bool
    checks: Mapping[str, ResponseCheck]  # status ("201", "default") -> its body's check
    required_headers: Mapping[str, frozenset[str]]
    parameters: Sequence[Mapping[str, Any]]  # as the spec declares them, $refs resolved

    def check_of(self, status: int) -> tuple[ResponseCheck | None, frozenset[str]]:
        key = str(status) if str(status) in self.checks else "default"
        return self.checks.get(key), self.required_headers.get(key, frozenset())


def operations(
    apis: list[Api], participation: dict[str, Any]
) -> dict[tuple[str, str], Operation]:
    """Every operation of the APIs by (base path, operationId), with its handler and checks."""
    table: dict[tuple[str, str], Operation] = {}
    for api in apis:
        spec = resolve_refs(api.spec)
        resolver = SnakeCaseResolver(api.handlers)
        for item in spec["paths"].values():
            for method, op in item.items():
                if method not in _METHODS:
                    continue
                checks: dict[str, ResponseCheck] = {}
                required: dict[str, frozenset[str]] = {}
                for status, response in op.get("responses", {}).items():
                    schema = response.get("content", {}).get("application/json", {}).get("schema")
                    if schema is not None:
                        checks[str(status)] = ResponseCheck(schema, participation)
                    required[str(status)] = frozenset(
                        name.lower()
                        for name, header in response.get("headers", {}).items()
                        if header.get("required")
                    )
                operation_id = op["operationId"]
                consumed = set(op.get("requestBody", {}).get("content", {}))
                if consumed - {"application/json"}:
                    # validation.validator_map checks every body as JSON: fail at start-up.
                    raise ValueError(f"{operation_id} consumes {sorted(consumed)}: JSON only")
                table[api.base_path, operation_id] = Operation(
                    operation_id,
                    resolver.function(operation_id),
                    "requestBody" in op,
                    checks,
                    required,
                    op.get("parameters", []),
                )
    return table


class Endpoints:
    """Calls the operation's handler with the request's facts and checked arguments, checks
    the answer against the spec (a broken one is a 500: a sandbox bug never reaches a client
    as if it were the contract) and sends it."""

    def __init__(self, table: Mapping[tuple[str, str], Operation], fallback: ASGIApp) -> None:
        self.table = table
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the app around Connexion answers it
            return
        route = routed(scope)
        operation = None if route is None else self.table.get(route)
        if operation is None:  # no route (or one Connexion's routed middlewares did not see)
            await self.fallback(scope, receive, send)
            return
        facts = facts_of(scope)
        if operation.has_body:
            result = await operation.handler(facts, body=facts.body, **facts.arguments)
        else:
            result = await operation.handler(facts, **facts.arguments)
        data, status = result[0], result[1]
        headers: Mapping[str, str] = result[2] if len(result) > 2 else {}
        payload = dumps(data)
        check, required = operation.check_of(status)
        if check is not None:
            problem = check.problem(data, shape_of(data), payload)
            if problem is not None:
                raise RuntimeError(
                    f"{operation.operation_id} answered {status} against the spec: {problem}"
                )
        missing = required - {name.lower() for name in headers}
        if missing:
            raise RuntimeError(
                f"{operation.operation_id} answered {status} without {sorted(missing)}"
            )
        raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})


class SpecPages:
    """What a path no operation matched may be: an API's spec (`{base}/openapi.json` or
    `.yaml`, naming this server), its Swagger UI (Connexion's, `{base}/ui/`), or nothing (a 404,
    or a 405 with `Allow` when the path has other methods)."""

    def __init__(
        self, apis: list[Api], swagger_ui: Callable[[ASGIApp], ASGIApp], not_found: ASGIApp
    ) -> None:
        self.specs = {api.base_path: api.spec for api in apis}
        self.ui = swagger_ui(not_found)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        base, dot, extension = path.rpartition("/openapi.")
        spec_page = dot and base in self.specs and extension in ("json", "yaml")
        if spec_page and scope["method"] in ("GET", "HEAD"):
            await self.spec(scope, send, base, extension)
            return
        await self.ui(scope, receive, send)

    async def spec(self, scope: Scope, send: Send, base: str, extension: str) -> None:
        spec = dict(self.specs[base])
        host = dict(scope.get("headers", ())).get(b"host", b"").decode("latin-1")
        origin = f"{scope.get('scheme', 'http')}://{host}" if host else ""
        spec["servers"] = [{"url": origin + base, "description": "This VPP Sandbox"}]
        if extension == "json":
            payload, kind = orjson.dumps(spec), b"application/json"
        else:
            payload, kind = yaml.safe_dump(spec, sort_keys=False).encode(), b"text/yaml"
        raw = [(b"content-type", kind), (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

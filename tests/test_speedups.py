"""The Connexion patches give Connexion's own answers: the same inputs, the same outputs.

Each prepared step is run next to the Connexion code it replaces (kept in
`speedups.ORIGINALS`, or Connexion's class when it is a subclass) on the operations of both
specs; and the whole sandbox answers the same transcript with the patches refused.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from copy import deepcopy
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from connexion.context import _context, _operation, _receive, _scope
from connexion.decorators import main as decorators_main
from connexion.decorators import parameter as decorators_parameter
from connexion.decorators.parameter import AsyncParameterDecorator
from connexion.frameworks.starlette import Starlette as StarletteFramework
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.response_validation import ResponseValidationOperation
from connexion.operations import AbstractOperation
from connexion.resolver import Resolver
from connexion.spec import Specification
from connexion.uri_parsing import OpenAPIURIParser

from vpp_sandbox import openapi
from vpp_sandbox.mock_server import speedups
from vpp_sandbox.mock_server.validation import validator_map

assert speedups.install()

ROOT = Path(__file__).resolve().parents[1]

# A small spec for what ours does not have: a required response header, defaults of every
# kind, an array query parameter, a form body and an operation without a body name.
EXTRA_SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "extra", "version": "1"},
    "paths": {
        "/things/{n}": {
            "parameters": [
                {"name": "n", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "post": {
                "operationId": "makeThing",
                "parameters": [
                    {"name": "tags", "in": "query",
                     "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "flag", "in": "query",
                     "schema": {"type": "boolean", "default": True}},
                    {"name": "filter", "in": "query", "style": "deepObject",
                     "schema": {"type": "object", "default": {"a": [1]}}},
                    {"name": "class", "in": "query", "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object",
                                       "properties": {"x": {"type": "integer"}}}
                        }
                    }
                },
                "responses": {
                    "201": {
                        "description": "made",
                        "headers": {
                            "Location": {"required": True, "schema": {"type": "string"}}
                        },
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "default": {"description": "other"},
                },
            },
            "get": {
                "operationId": "readThing",
                "responses": {
                    "200": {
                        "description": "either",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/plain": {"schema": {"type": "string"}},
                            "application/octet-stream": {"schema": {"type": "string"}},
                        },
                    }
                },
            },
        }
    },
}


def operations() -> list[AbstractOperation]:
    out = []
    specs = [openapi.load(openapi.CONTRACT), openapi.load(openapi.CONTROL), deepcopy(EXTRA_SPEC)]
    for raw in specs:
        spec = Specification.load(raw)
        for path, item in spec["paths"].items():
            for method in ("get", "post", "put", "delete", "patch"):
                if method in item:
                    out.append(
                        spec.operation_cls.from_spec(
                            spec,
                            path=path,
                            method=method,
                            resolver=Resolver(function_resolver=lambda _: (lambda: None)),
                        )
                    )
    return out


OPERATIONS = operations()
OP_IDS = [op.operation_id for op in OPERATIONS]


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # the same error is the same outcome
        return type(exc).__name__, str(exc)


# -- parameter extraction -------------------------------------------------------------------

PATHS = [{}, {"participation_id": "vpp_" + "a" * 24}, {"n": 3, "other": "x"}, {"n": "7"}]
QUERIES = [
    {},
    {"limit": 5},
    {"limit": 5, "device_id": "dev_" + "b" * 24, "unknown": "u"},
    {"tags": ["a", "b"], "flag": False, "filter": {"a": [2], "b": 1}, "class": "c"},
]
BODIES = [None, {}, {"device_id": "dev_" + "c" * 24}, {"x": "1"}, []]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain", ""]
SIGNATURES = [([], False), (["body", "token_info", "participation_id", "limit"], False),
              (["n", "tags", "flag", "filter", "class_", "x"], False), ([], True)]


@pytest.mark.parametrize("operation", OPERATIONS, ids=OP_IDS)
def test_the_argument_plan_gives_get_arguments_results(operation: AbstractOperation) -> None:
    for sanitize in (decorators_parameter.pythonic, decorators_parameter.sanitized):
        plan = speedups.ArgumentPlan(operation, sanitize)
        cases = itertools.product(PATHS, QUERIES, BODIES, CONTENT_TYPES, SIGNATURES)
        for path, query, body, content_type, (arguments, has_kwargs) in cases:
            inputs = {"path_params": path, "query_params": query, "body": body,
                      "files": {}, "arguments": arguments, "has_kwargs": has_kwargs,
                      "content_type": content_type}
            expected = outcome(partial(
                decorators_parameter.get_arguments, operation, sanitize=sanitize,
                **deepcopy(inputs)))
            got = outcome(partial(plan.arguments, **deepcopy(inputs)))
            assert got == expected, inputs
        # the defaults handed out are never shared between requests
        first = plan.arguments(path_params={}, query_params={}, body=None, files={},
                               arguments=[], has_kwargs=True, content_type="")
        for value in first.values():
            if isinstance(value, dict):
                value["changed"] = True
        again = plan.arguments(path_params={}, query_params={}, body=None, files={},
                               arguments=[], has_kwargs=True, content_type="")
        assert all(not isinstance(v, dict) or "changed" not in v for v in again.values())


def make_scope(method: str, path: str, query: bytes, content_type: str | None) -> dict[str, Any]:
    headers = [(b"host", b"test")]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
            "query_string": query, "headers": headers, "root_path": "",
            "path_params": {}, "extensions": {}}


async def _call_wrapper(
    make: Callable[..., Any], operation: AbstractOperation, handler: Callable[..., Any],
    scope: dict[str, Any], body: bytes, context: dict[str, Any],
) -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    tokens = [_operation.set(operation), _context.set(context), _scope.set(scope),
              _receive.set(receive)]
    try:
        wrapper = make(AsyncParameterDecorator(framework=StarletteFramework,
                                               pythonic_params=True), handler)
        parser = OpenAPIURIParser(operation.parameters, operation.body_definition())
        request = ConnexionRequest(scope, receive, uri_parser=parser)
        return await wrapper(request)
    finally:
        for var, token in zip((_operation, _context, _scope, _receive), tokens, strict=True):
            var.reset(token)


def _run_wrapper(
    make: Callable[..., Any], operation: AbstractOperation, handler: Callable[..., Any],
    scope: dict[str, Any], body: bytes, context: dict[str, Any],
) -> Any:
    return asyncio.run(
        _call_wrapper(make, operation, handler, deepcopy(scope), body, dict(context))
    )


async def _all_kwargs(**kwargs: Any) -> Any:
    return kwargs


async def _some(body: Any = None, token_info: Any = None, participation_id: Any = None,
                account_id: Any = None, limit: Any = None, n: Any = None,
                context_: Any = None) -> Any:
    return {"body": body, "token_info": token_info, "participation_id": participation_id,
            "account_id": account_id, "limit": limit, "n": n, "context_": context_ is not None}


@pytest.mark.parametrize("operation", OPERATIONS, ids=OP_IDS)
def test_the_parameter_decorator_gives_connexions_arguments(operation: AbstractOperation) -> None:
    cases = itertools.product(
        [b"", b"limit=7&device_id=dev_" + b"d" * 24, b"tags=a&tags=b&flag=false&filter[b]=2"],
        [(None, b""), ("application/json", b'{"device_id": "x"}'), ("application/json", b"null"),
         ("application/json; charset=utf-8", b"[1]"), ("text/plain", b"hi"),
         ("application/x-www-form-urlencoded", b"x=1")],
        [_all_kwargs, _some],
    )
    answered = {"_all_kwargs": 0, "_some": 0}
    for query, (content_type, body), handler in cases:
        scope = make_scope(operation.method.upper(), "/x", query, content_type)
        raw = {"participation_id": "vpp_" + "e" * 24, "account_id": "acc_" + "e" * 24, "n": "5"}
        scope["path_params"] = {
            p["name"]: raw[p["name"]] for p in operation.parameters if p["in"] == "path"
        }
        context = {"token_info": {"sub": "me"}, "user": "me"}

        got, expected = (
            outcome(partial(_run_wrapper, make, operation, handler, scope, body, context))
            for make in (speedups._parameter_call, speedups.ORIGINALS["parameter_call"])
        )
        assert got == expected, (query, content_type, handler.__name__)
        answered[handler.__name__] += expected[0] == "ok"
    # most cases reach the handler: the comparison is not of two errors
    assert min(answered.values()) >= 12, answered


def test_sync_and_async_handlers_are_called_as_connexion_calls_them() -> None:
    def sync_handler(x: int) -> Any:
        # in a worker thread, never on the event loop's
        return ("sync", x, threading.current_thread() is threading.main_thread())

    async def async_handler(x: int) -> Any:
        return ("async", x)

    def bad_handler(x: int) -> Any:
        raise ValueError(x)

    decorator = decorators_main.ASGIDecorator()
    original = speedups.ORIGINALS["sync_async_decorator"](decorator)
    patched = decorator._sync_async_decorator
    for handler in (sync_handler, async_handler, bad_handler):
        wrapped = [wrap(handler) for wrap in (original, patched)]
        assert [w.__name__ for w in wrapped] == [handler.__name__] * 2
        results = [outcome(partial(asyncio.run, w(x=3))) for w in wrapped]
        assert results[0] == results[1]


class _ConnexionURIParser(OpenAPIURIParser):
    param_schemas = property(speedups.ORIGINALS["param_schemas"])


@pytest.mark.parametrize("operation", OPERATIONS, ids=OP_IDS)
def test_the_uri_parser_resolves_as_connexions(operation: AbstractOperation) -> None:
    ours = OpenAPIURIParser(operation.parameters, operation.body_definition())
    theirs = _ConnexionURIParser(operation.parameters, operation.body_definition())
    assert ours.param_schemas is ours.param_schemas  # built once
    for _ in range(2):
        assert ours.param_schemas == theirs.param_schemas
        for query in [{}, {"limit": ["5"]}, {"tags": ["a,b", "c"], "flag": ["false"]},
                      {"filter[a]": ["1"], "filter[b]": ["2"]}, {"unknown": ["x"]}]:
            assert outcome(partial(ours.resolve_query, deepcopy(query))) == outcome(
                partial(theirs.resolve_query, deepcopy(query)))
        for path in [{}, {"participation_id": "vpp_" + "a" * 24}, {"n": "3"}, {"n": "x"}]:
            assert outcome(partial(ours.resolve_path, dict(path))) == outcome(
                partial(theirs.resolve_path, dict(path)))


@pytest.mark.parametrize(
    "schema",
    [{"type": "string"}, {"type": "string", "nullable": True}, {}, {"type": "integer"},
     {"type": "integer", "nullable": True}, {"type": "number"}, {"type": "boolean"},
     {"type": "array", "items": {"type": "integer"}}, {"type": "object"},
     {"type": "object", "properties": {"a": {"type": "integer"}}}, {"type": "string",
                                                                     "format": "date"}],
)
def test_parameters_are_coerced_as_connexion_coerces_them(schema: dict[str, Any]) -> None:
    from connexion import uri_parsing

    values: list[Any] = ["abc", "12", "1.5", "true", "null", " None ", None, ["1", "x"],
                         {"a": "3"}, 7, [], ""]
    for param in ({"name": "p", "in": "query", "schema": schema}, {"name": "p", **schema}):
        for value in values:
            expected = outcome(partial(speedups.ORIGINALS["coerce_type"], deepcopy(param),
                                       deepcopy(value), "parameter", "p"))
            got = outcome(partial(uri_parsing.coerce_type, deepcopy(param), deepcopy(value),
                                  "parameter", "p"))
            assert got == expected, (param, value)


# -- response content type and response validation ------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS, ids=OP_IDS)
def test_the_response_content_type_is_inferred_as_connexion_infers_it(
    operation: AbstractOperation,
) -> None:
    original = speedups.ORIGINALS["infer_content_type"]
    token = _operation.set(operation)
    inferred = set()
    try:
        for data, headers in itertools.product(
            [None, {"a": 1}, "text", b"bytes", iter([b"x"])],
            [{}, {"Content-Type": "application/json"}, {"content-type": "text/plain"}],
        ):
            expected = outcome(lambda d=data, h=headers: original(d, h))
            assert outcome(lambda d=data, h=headers: speedups._infer_content_type(d, h)) == expected
            inferred.add(expected)
    finally:
        _operation.reset(token)
    assert any(kind == "ok" and value for kind, value in inferred)


RESPONSES: list[tuple[int, str | None, list[tuple[bytes, bytes]], bytes]] = [
    (200, "application/json", [], b'{"object": "list"}'),
    (200, "application/json", [], b'{"object": "vpp-participation"}'),
    (201, "application/json", [(b"location", b"/x")], b"{}"),
    (201, "application/json", [], b"{}"),
    (200, "text/plain", [], b"hello"),
    (200, None, [], b"{}"),
    (404, "application/json", [], b'{"object": "error"}'),
    (418, "application/json", [], b"[]"),
    (500, "application/problem+json", [], b"{}"),
    (204, None, [], b""),
]


async def _respond(
    cls: type[ResponseValidationOperation], operation: AbstractOperation,
    status: int, content_type: str | None, headers: list[tuple[bytes, bytes]], body: bytes,
) -> list[Any]:
    async def next_app(scope: Any, receive: Any, send: Any) -> None:
        start_headers = list(headers)
        if content_type is not None:
            start_headers.append((b"content-type", content_type.encode()))
        await send({"type": "http.response.start", "status": status, "headers": start_headers})
        await send({"type": "http.response.body", "body": body})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    validation = cls(next_app, operation=operation, validator_map=validator_map())
    await validation(make_scope("GET", "/x", b"", None), lambda: None, send)
    return sent


def _respond_now(
    cls: type[ResponseValidationOperation], operation: AbstractOperation, case: Any
) -> list[Any]:
    return asyncio.run(_respond(cls, operation, *case))


@pytest.mark.parametrize("operation", OPERATIONS, ids=OP_IDS)
def test_prepared_response_validation_answers_as_connexions(operation: AbstractOperation) -> None:
    passed = 0
    for case in RESPONSES:
        results = [
            outcome(partial(_respond_now, cls, operation, case))
            for cls in (ResponseValidationOperation, speedups.PreparedResponseValidationOperation)
        ]
        assert results[0] == results[1], case
        passed += results[0][0] == "ok"
        # twice: the second answer comes from what the first prepared
        again = outcome(
            partial(_respond_now, speedups.PreparedResponseValidationOperation, operation, case)
        )
        assert again == results[0], case
    assert passed > 0
    if operation.operation_id not in ("makeThing", "readThing"):
        assert passed < len(RESPONSES)  # our spec refuses some of these answers


def test_the_middleware_list_is_connexions_with_the_prepared_response_validation() -> None:
    from connexion.middleware.main import ConnexionMiddleware
    from connexion.middleware.response_validation import ResponseValidationMiddleware

    prepared = speedups.middlewares()
    default = ConnexionMiddleware.default_middlewares
    assert len(prepared) == len(default)
    for ours, theirs in zip(prepared, default, strict=True):
        if theirs is ResponseValidationMiddleware:
            assert ours is speedups.PreparedResponseValidationMiddleware
        else:
            assert ours is theirs


# -- the whole sandbox with the patches refused ---------------------------------------------


def _transcript(patched: bool) -> list[Any]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "speedups_transcript.py"),
         "patched" if patched else "refused"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: list[Any] = json.loads(out.stdout)
    return result


@pytest.mark.slow
def test_the_sandbox_answers_the_same_with_the_patches_refused() -> None:
    patched, refused = _transcript(True), _transcript(False)
    assert refused[0] == {"patched": False}
    assert patched[0] == {"patched": True}
    assert len(patched) == len(refused) > 20
    for a, b in zip(patched[1:], refused[1:], strict=True):
        assert a == b

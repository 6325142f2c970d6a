"""The spec's documented responses, compiled once: which statuses an operation may answer, with
which media types and headers, and a validator for each body (OpenAPI 3.0 `nullable` turned
into Draft 4); and the spec's request schemas and media types."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from vpp_sandbox import openapi

__all__ = [
    "documented_statuses",
    "error_codes",
    "request_media_types",
    "request_problem",
    "response_problem",
    "rfc3339",
]

_METHODS = ("get", "post", "put", "patch", "delete")

Problem = Callable[[Any], str | None]


def _draft4(node: Any) -> Any:
    """OpenAPI's `nullable: true` as a "null" type (and a None enum value), recursively."""
    if isinstance(node, list):
        return [_draft4(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _draft4(v) for k, v in node.items()}
    if node.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


@dataclass(frozen=True, slots=True)
class _Header:
    required: bool
    types: tuple[str, ...]  # the schema's types, to read the header's text as one of them
    problem: Problem


@dataclass(frozen=True, slots=True)
class _Response:
    """One documented response: its media types, headers and JSON body (None: no body)."""

    media_types: tuple[str, ...]
    headers: Mapping[str, _Header]
    body: Problem | None


def _resolve(spec: dict[str, Any], node: dict[str, Any], kind: str) -> dict[str, Any]:
    if "$ref" in node:
        resolved: dict[str, Any] = spec["components"][kind][node["$ref"].rsplit("/", 1)[1]]
        return resolved
    return node


@functools.cache
def _table() -> dict[str, dict[int, _Response]]:
    """operationId -> status -> what the spec documents for that response."""
    spec = openapi.load()
    components = _draft4(spec.get("components", {}))
    table: dict[str, dict[int, _Response]] = {}
    for item in spec["paths"].values():
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            statuses: dict[int, _Response] = {}
            for code, response in op.get("responses", {}).items():
                response = _resolve(spec, response, "responses")
                content = response.get("content", {})
                schema = content.get("application/json", {}).get("schema")
                headers = {}
                for name, header in response.get("headers", {}).items():
                    header = _resolve(spec, header, "headers")
                    kind = header.get("schema", {}).get("type", "string")
                    headers[name.lower()] = _Header(
                        bool(header.get("required")),
                        tuple(kind) if isinstance(kind, list) else (kind,),
                        _compile(header.get("schema", {}), components),
                    )
                statuses[int(code)] = _Response(
                    tuple(str(m).lower() for m in content),
                    headers,
                    _compile(schema, components) if schema else None,
                )
            table[op["operationId"]] = statuses
    return table


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$"
)


def rfc3339(value: str) -> bool:
    """RFC 3339 date-time as its grammar allows (lower-case t and z, a leap second): what a
    client may send. Responses are held to more (UTC, whole seconds, "Z") by the §2 check."""
    m = _RFC3339.match(value)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    offset_ok = m.group(9) is None or (int(m.group(9)) <= 23 and int(m.group(10)) <= 59)
    return (1 <= month <= 12 and 1 <= day <= days[month - 1] and hour <= 23 and minute <= 59
            and second <= 60 and offset_ok)


def _compile(
    schema: dict[str, Any], components: dict[str, Any], *, request: bool = False
) -> Callable[[Any], str | None]:
    root = {**_draft4(schema), "components": components}
    # Requests: a time is any RFC 3339 date-time (a server may not refuse one the RFC allows).
    formats = {"date-time": rfc3339} if request else None
    validator = jsonschema_rs.Draft4Validator(root, validate_formats=True, formats=formats)
    masked = jsonschema_rs.Draft4Validator(
        root, validate_formats=True, formats=formats, mask=_MASK
    )

    def problem(instance: Any) -> str | None:
        if validator.is_valid(instance):  # stops at the first error, builds no message
            return None
        # The first error's message quotes the value that broke the schema: found with the
        # value masked, then quoted only when it is short (a page of 8,000 items would make
        # a message of megabytes, formatted while the GIL is held).
        error = _first_error(masked, instance)
        if error is None:
            return None
        if _short(_value_at(instance, error.instance_path)):
            error = _first_error(validator, instance) or error
        where = "/".join(str(p) for p in error.instance_path) or "(the body)"
        return f"{where}: {error.message}"

    return problem


_MASK = "the value (too long to quote)"
_QUOTED = 2000  # a value quoted in a message has at most about this many parts and characters


def _first_error(validator: Any, instance: Any) -> Any:
    try:
        validator.validate(instance)
    except jsonschema_rs.ValidationError as error:
        return error
    return None


def _value_at(instance: Any, path: Any) -> Any:
    for step in path:
        try:
            instance = instance[step]
        except (KeyError, IndexError, TypeError):
            return instance
    return instance


def _short(value: Any) -> bool:
    """Whether a JSON value is small enough to quote, looking at no more than `_QUOTED` parts."""
    budget, stack = _QUOTED, [value]
    while stack:
        item = stack.pop()
        size = len(item) if isinstance(item, str | list | dict) else 1
        budget -= max(size, 1)
        if budget < 0:
            return False
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _codes_in(spec: dict[str, Any], schema: Any) -> set[str]:
    """The `code` enum an error response's schema gives (through $ref and allOf)."""
    if not isinstance(schema, dict):
        return set()
    if "$ref" in schema:
        return _codes_in(spec, _resolve(spec, schema, "schemas"))
    found = set(schema.get("properties", {}).get("code", {}).get("enum", ()))
    for part in schema.get("allOf", ()):
        found |= _codes_in(spec, part)
    return found


@functools.cache
def error_codes() -> dict[int, frozenset[str]]:
    """status -> the error codes the spec's responses of that status give (its `code` enums)."""
    spec = openapi.load()
    out: dict[int, set[str]] = {}
    for item in spec["paths"].values():
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            for code, response in op.get("responses", {}).items():
                if not str(code).isdigit() or int(code) < 400:
                    continue
                response = _resolve(spec, response, "responses")
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                out.setdefault(int(code), set()).update(_codes_in(spec, schema))
    return {status: frozenset(codes) for status, codes in out.items()}


def documented_statuses(operation: str) -> tuple[int, ...]:
    """The statuses the spec documents for `operation` (empty for an unknown operation)."""
    return tuple(sorted(_table().get(operation, {})))


def response_problem(
    operation: str, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> str | None:
    """What is wrong with a response by the spec: an undocumented status, a media type or a
    header the spec does not document for it (when `headers` are given), or a body that breaks
    the documented schema; None when it conforms (or the operation is not the spec's)."""
    statuses = _table().get(operation)
    if statuses is None:
        return None
    if status not in statuses:
        documented = ", ".join(str(s) for s in sorted(statuses))
        return f"status {status} is not documented for {operation} (documented: {documented})"
    response = statuses[status]
    if headers is not None:
        problem = _header_problem(response, {k.lower(): v for k, v in headers.items()})
        if problem is not None:
            return f"{status} {problem}"
    if response.body is None:
        return None
    if body is None:
        return f"{status} has no JSON body"
    return response.body(body)


def _header_problem(response: _Response, headers: Mapping[str, str]) -> str | None:
    if response.media_types:
        sent = headers.get("content-type")
        if sent is None:
            return f"has no Content-Type (documented: {', '.join(response.media_types)})"
        if not any(_media_matches(m, sent) for m in response.media_types):
            return (f"has Content-Type {sent!r}, which is not documented for it (documented: "
                    f"{', '.join(response.media_types)})")
    for name, header in response.headers.items():
        value = headers.get(name)
        if value is None:
            if header.required:
                return f"lacks the documented header {name}"
            continue
        problem = header.problem(_typed(value, header.types))
        if problem is not None:
            return f"header {name}: {value!r}: {problem.split(': ', 1)[-1]}"
    return None


def _media_parts(media: str) -> tuple[str, str]:
    kind, _, sub = media.split(";", 1)[0].strip().lower().partition("/")
    return kind, sub


def _media_matches(documented: str, sent: str) -> bool:
    """`sent` (parameters ignored) is the documented media type, or one its wildcards allow."""
    want, got = _media_parts(documented), _media_parts(sent)
    return all(w in ("*", g) for w, g in zip(want, got, strict=True)) and all(got)


def _typed(value: str, types: tuple[str, ...]) -> Any:
    """A header's text as the JSON value its schema types it (integers, numbers, booleans)."""
    text = value.strip()
    if "integer" in types and re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if "number" in types and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text):
        return float(text)
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    return value


def request_media_types(operation: str) -> frozenset[str] | None:
    """The media types the spec declares for `operation`'s request body (empty: it takes no
    body); None for an operation that is not the spec's."""
    return _request_media().get(operation)


@functools.cache
def _request_media() -> dict[str, frozenset[str]]:
    spec = openapi.load()
    return {
        op["operationId"]: frozenset(
            str(m).lower() for m in op.get("requestBody", {}).get("content", {})
        )
        for item in spec["paths"].values()
        for method in _METHODS
        if isinstance(op := item.get(method), dict)
    }


@functools.cache
def _requests() -> dict[str, dict[str, Callable[[Any], str | None]]]:
    """operationId -> {"body" or a parameter name: problem finder} for the spec's requests."""
    spec = openapi.load()
    components = _draft4(spec.get("components", {}))
    out: dict[str, dict[str, Callable[[Any], str | None]]] = {}
    for item in spec["paths"].values():
        shared = item.get("parameters", [])
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            found: dict[str, Callable[[Any], str | None]] = {}
            for param in [*shared, *op.get("parameters", [])]:
                if "$ref" in param:
                    param = spec["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
                found[param["name"]] = _compile(param["schema"], components, request=True)
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "schema" in body:
                found["body"] = _compile(body["schema"], components, request=True)
            out[op["operationId"]] = found
    return out


def request_problem(
    operation: str, body: Any, query: dict[str, str], path_id: str | None = None
) -> str | None:
    """Why a request breaks the spec's schemas (its body, documented query parameters or path
    id), or None. Query values arrive as text: integers are read as integers first."""
    checks = _requests().get(operation)
    if checks is None:
        return None
    if "body" in checks:
        problem = checks["body"](body)
        if problem is not None:
            return f"body {problem}"
    for name, value in query.items():
        if name not in checks:
            continue
        typed: Any = value
        if name == "limit":
            if not re.fullmatch(r"-?[0-9]+", value):
                return f"limit={value!r} is not an integer"
            typed = int(value)
        problem = checks[name](typed)
        if problem is not None:
            return f"{name}={value!r}: {problem.split(': ', 1)[-1]}"
    if path_id is not None and "participation_id" in checks:
        problem = checks["participation_id"](path_id)
        if problem is not None:
            return f"participation_id {path_id!r}: {problem.split(': ', 1)[-1]}"
    return None

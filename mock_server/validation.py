"""Request checks in the error catalogue's terms: parameters, JSON bodies and body size.

Validation is never skipped, only made fast: every schema is compiled once with jsonschema-rs
(Rust) and checked with it; only when it says "invalid" does Connexion's jsonschema validator run
again, to decide (it is the reference) and to name the field in the message. Response bodies
are validated the same way, except the stored participations in them: those were checked when
they were written (`mock_server.documents`), and only what is around them is checked again.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import jsonschema_rs
import orjson
from connexion.datastructures import MediaTypeDict
from connexion.json_schema import Draft4RequestValidator, Draft4ResponseValidator
from connexion.utils import is_null, is_nullable
from connexion.validators import ParameterValidator
from connexion.validators.json import JSONRequestBodyValidator, JSONResponseBodyValidator
from jsonschema import Draft4Validator, FormatChecker, ValidationError, validators
from starlette.datastructures import Headers, QueryParams
from starlette.types import Receive, Scope

from vpp_sandbox.mock_server.documents import participation_schema
from vpp_sandbox.mock_server.encoding import STORED_KEY, take_shape
from vpp_sandbox.mock_server.errors import ApiError

__all__ = [
    "FORMAT_CHECKER",
    "CompiledJSONResponseBodyValidator",
    "FlatpeakJSONBodyValidator",
    "FlatpeakParameterValidator",
    "compiled",
    "ecma_pattern",
    "unstorable",
    "validator_map",
    "with_stored_slots",
]


def validator_map() -> dict[str, Any]:
    """Connexion's `validator_map` with our parameter, JSON body and JSON response validators."""
    return {
        "parameter": FlatpeakParameterValidator,
        "body": MediaTypeDict({"*/*json": FlatpeakJSONBodyValidator}),
        "response": MediaTypeDict({"*/*json": CompiledJSONResponseBodyValidator}),
    }


# -- whole strings --------------------------------------------------------------------------------
#
# JSON Schema patterns are ECMA-262 regexes, where `$` is the end of the string. Python's `$` also
# matches before a final newline, so jsonschema (Connexion's validator, re.search) let
# "dev_…\n" pass `^dev_[0-9a-f]{24}$` where jsonschema-rs refused it, and the fallback had the
# last word: ids with a trailing newline were stored. The Python validators here read `$` as
# ECMA does; formats refuse a trailing newline for the same reason (rfc3339-validator's `$`).


def ecma_pattern(pattern: str) -> str:
    """`pattern` for Python's `re` with ECMA-262's `$` (end of input, `\\Z`) outside classes."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        out.append(char)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=512)
def _search(pattern: str) -> Callable[[str], Any]:
    return re.compile(ecma_pattern(pattern)).search


def _whole_string_pattern(
    validator: Any, pattern: str, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern)(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _no_final_newline(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def whole(value: Any) -> Any:
        if isinstance(value, str) and value.endswith("\n"):
            return False
        return check(value)

    return whole


# Draft 4's format checks (date-time by rfc3339-validator, …), none of them passing "…\n".
FORMAT_CHECKER = FormatChecker(formats=())
for _name, (_check, _raises) in Draft4Validator.FORMAT_CHECKER.checkers.items():
    FORMAT_CHECKER.checkers[_name] = (_no_final_newline(_check), _raises)

_WHOLE = {"pattern": _whole_string_pattern}
_RequestValidator = validators.extend(Draft4RequestValidator, _WHOLE)
_ResponseValidator = validators.extend(Draft4ResponseValidator, _WHOLE)
_ParameterValidator = validators.extend(Draft4Validator, _WHOLE)


# -- text that cannot be stored ------------------------------------------------------------------


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains the NUL character (\\u0000), which text cannot hold; remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        return (
            f"contains an unpaired surrogate (\\u{code:04x}), which is not Unicode text; send "
            "the character itself in UTF-8, or as a pair of \\u escapes"
        )
    return None


def unstorable(body: Any) -> str | None:
    """Why a parsed JSON body holds a string no UTF-8 text can hold (NUL, lone surrogate), or None.

    Such strings made the store's encoder raise (a 500) or would be refused by PostgreSQL.
    """
    stack: list[tuple[str, Any]] = [("body", body)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            problem = _text_problem(node)
            if problem:
                return f"{where} {problem}."
        elif isinstance(node, dict):
            for key, value in node.items():
                problem = _text_problem(key) if isinstance(key, str) else None
                if problem:
                    return f"A field name in {where} {problem}."
                stack.append((f"{where}.{key}", value))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(node))
    return None


# -- compiled schemas ---------------------------------------------------------------------------

# The formats Connexion's jsonschema checks are checked by the same Python functions (jsonschema-rs'
# own date-time accepts leap seconds, lower-case "t" and year 0). Formats jsonschema does not
# check (uri) are checked by jsonschema-rs; if that is stricter, the fallback decides.
_FORMATS: dict[str, Callable[[str], bool]] = {
    name: partial(FORMAT_CHECKER.conforms, format=name) for name in FORMAT_CHECKER.checkers
}


def _openapi_to_draft4(node: Any) -> Any:
    """A copy in plain Draft 4: OpenAPI's `nullable` becomes a "null" type and a None enum value.

    That is exactly what Connexion's validators do with `nullable` (they relax `type` and
    `enum`). `writeOnly` (an error in a response for Connexion) has no Draft 4 equivalent: a
    schema with it is not compiled.
    """
    if isinstance(node, list):
        return [_openapi_to_draft4(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "writeOnly" in node or "x-writeOnly" in node:
        raise _NotCompilable
    out = {k: _openapi_to_draft4(v) for k, v in node.items() if k != "components"}
    if node.get("nullable") is True or node.get("x-nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


class _NotCompilable(Exception):
    pass


# (id(schema), kind) -> (schema, validator): Connexion hands the same schema object to every
# request of an operation, so each is compiled once; the schema is kept so its id stays unique.
_COMPILED: dict[tuple[int, str], tuple[Any, Callable[[Any], bool] | None]] = {}


def compiled(schema: dict[str, Any], kind: str = "request") -> Callable[[Any], bool] | None:
    """`is_valid` of the compiled schema; None if it cannot be compiled (jsonschema alone then).

    `kind` is "request" (a body: OpenAPI schema, Connexion's Python format checks), "parameter"
    (plain Draft 4, as Connexion checks parameters) or "response" (OpenAPI schema; formats by
    jsonschema-rs, which follows RFC 3339 to the letter: responses are ours, made by
    `format_time`, and the stricter Python check costs a call per time on a page of 30).
    """
    key = (id(schema), kind)
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    check: Callable[[Any], bool] | None
    try:
        plain = schema if kind == "parameter" else _openapi_to_draft4(schema)
        formats = None if kind == "response" else _FORMATS
        check = jsonschema_rs.Draft4Validator(
            plain, validate_formats=True, formats=formats
        ).is_valid
    except (_NotCompilable, ValueError, jsonschema_rs.ValidationError):
        check = None
    _COMPILED[key] = (schema, check)
    return check


# -- request validation with messages that say how to fix the request --------------------------

_PARAM_HINTS = {
    "limit": "limit must be an integer from 1 to 100 (default 30).",
    "starting_after": "starting_after must be a participation id: vpp_ and 24 lowercase hex "
    "characters (the last id of the page you hold).",
    "ending_before": "ending_before must be a participation id: vpp_ and 24 lowercase hex "
    "characters (the first id of the page you hold).",
    "device_id": "device_id must be a device id: dev_ and 24 lowercase hex characters.",
    "participation_id": "participation_id must be vpp_ and 24 lowercase hex characters, "
    "e.g. vpp_7c2f1a9e4b0d8f3a6e2c5d10.",
}


class FlatpeakParameterValidator(ParameterValidator):  # type: ignore[misc]
    """Connexion's parameter checks, raising catalogue errors (400 invalid_parameter)."""

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        # Connexion copies the parameter and builds a jsonschema validator on every call; a
        # value the compiled schema accepts needs neither.
        if value is not None:
            check = compiled(param.get("schema", param), "parameter")
            if check is not None and check(value):
                return None
        # Connexion's own check, with whole-string patterns and formats.
        if is_nullable(param) and is_null(value):
            return None
        if value is not None:
            try:
                _ParameterValidator(
                    param.get("schema", param), format_checker=FORMAT_CHECKER
                ).validate(value)
            except ValidationError as exc:
                return str(exc)
            return None
        if param.get("required"):
            return f"Missing {parameter_type} parameter '{param['name']}'"
        return None

    def validate_request(self, request: Any) -> None:
        if self.strict_validation:
            spec_names = {p["name"] for p in self.parameters.get("query", [])}
            extra = sorted(set(request.query_params.keys()) - spec_names)
            if extra:
                allowed = ", ".join(sorted(spec_names)) or "none"
                raise ApiError(
                    "invalid_parameter",
                    f"Unknown query parameter(s): {', '.join(extra)}. Allowed: {allowed}.",
                )
            query_string = request.scope.get("query_string", b"")
            raw = QueryParams(query_string) if query_string else QueryParams()
            for name in spec_names:
                if len(raw.getlist(name)) > 1:
                    raise ApiError(
                        "invalid_parameter", f"Send the query parameter {name} at most once."
                    )
        checks = (
            ("query", self.validate_query_parameter),
            ("path", self.validate_path_parameter),
        )
        for location, check in checks:
            for param in self.parameters.get(location, []):
                if check(param, request):
                    name = param["name"]
                    hint = _PARAM_HINTS.get(name, f"{name} does not match its schema.")
                    raise ApiError("invalid_parameter", f"Invalid {location} parameter: {hint}")


def _json_path(error: ValidationError) -> str:
    out = "body"
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _describe(error: ValidationError) -> str:
    """A one-line message that names the field and says what it must be."""
    where = _json_path(error)
    kind, value = error.validator, error.validator_value
    if kind == "additionalProperties":
        known = ", ".join(sorted(error.schema.get("properties", {})))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        named = ", ".join(str(name)[:40] for name in extra[:5])
        if len(extra) > 5:
            named += f" and {len(extra) - 5} more"
        return f"{where} has unknown field(s) {named}; the fields are {known}."
    if kind == "required":
        missing = [name for name in value if name not in error.instance]
        return f"{where} is missing the required field(s) {', '.join(missing)}."
    if kind == "enum":
        return f"{where} must be one of {', '.join(str(v) for v in value)}."
    if kind == "pattern":
        id_like = re.fullmatch(r"\^([a-z]+)_\[0-9a-f\]\{24\}\$", str(value))
        if id_like:
            return f"{where} must be {id_like[1]}_ and 24 lowercase hex characters."
        return f"{where} must match {value}."
    if kind == "format":
        return f"{where} must be an RFC 3339 time such as 2026-11-03T09:15:00Z."
    if kind == "type":
        return f"{where} must be of type {value}."
    if kind in ("minItems", "maxItems"):
        return (
            f"{where} must have {'at least' if kind == 'minItems' else 'at most'} {value} item(s)."
        )
    if kind in ("minLength", "maxLength"):
        bound = "at least" if kind == "minLength" else "at most"
        return f"{where} must be {bound} {value} character(s) long."
    if kind == "uniqueItems":
        return f"{where} must not repeat a value."
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        return f"{where} must be {bound} {value}."
    if kind == "minProperties":
        known = ", ".join(sorted(error.schema.get("properties", {})))
        return f"{where} must have at least {value} of the fields {known}."
    if kind in ("oneOf", "anyOf"):
        options = " or ".join(_alternative(option) for option in value)
        about = str(error.schema.get("description", "")).strip()
        return f"{where} must be {options}." + (f" ({about})" if about else "")
    message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
    return f"{where} is not valid: {message}."


def _alternative(schema: Any) -> str:
    """One choice of a oneOf/anyOf, as a person would say it: "a string like P7D"."""
    if not isinstance(schema, dict):
        return "a value of another shape"
    kind = schema.get("type", "value")
    article = "an" if str(kind)[0] in "aeiou" else "a"
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if "minimum" in schema and "maximum" in schema:
        return f"{article} {kind} from {schema['minimum']} to {schema['maximum']}"
    if "example" in schema:
        return f"{article} {kind} like {schema['example']}"
    if "pattern" in schema:
        return f"{article} {kind} matching {schema['pattern']}"
    return f"{article} {kind}"


_UTF8_NAMES = frozenset({"utf8", "ascii", "usascii"})


class FlatpeakJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """Connexion's JSON body checks, raising catalogue errors (400 invalid_request_body)."""

    @property
    def _validator(self) -> Any:
        return _RequestValidator(self._schema, format_checker=FORMAT_CHECKER)

    def _empty(self) -> ApiError:
        fields = ", ".join(self._schema.get("required", ()))
        what = f"a JSON object with {fields}" if fields else "a JSON object"
        return ApiError(
            "invalid_request_body",
            f"The request body is empty; send {what} (see the API reference at /ui/).",
        )

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        # Connexion's own answer to a missing body is "RequestBody is required".
        if self._required and not int(Headers(scope=scope).get("content-length") or 0):
            raise self._empty()
        result: tuple[Receive, Scope] = await super().wrap_receive(receive, scope=scope)
        return result

    async def _parse(self, stream: Any, scope: Scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        if self._encoding.lower().replace("-", "").replace("_", "") not in _UTF8_NAMES:
            raise ApiError(
                "unsupported_media_type",
                f"charset={self._encoding} is not supported: JSON bodies are UTF-8. Encode the "
                "body as UTF-8 and send Content-Type: application/json.",
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(
                "invalid_request_body",
                "The request body is not valid UTF-8; send JSON encoded as UTF-8.",
            ) from None
        if not text.strip():
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            # json decides: it also reads what orjson refuses, integers over 64 bits, and lone
            # surrogates (\\ud800), which no text can hold: looked for below.
            try:
                body = json.loads(text, parse_constant=_reject_constant)
            except (json.JSONDecodeError, ValueError, RecursionError) as exc:
                raise ApiError(
                    "invalid_request_body",
                    f"The request body is not valid JSON ({exc}). Send a JSON object.",
                ) from None
            problem = unstorable(body)
        else:
            # orjson refuses lone surrogates; a NUL can only come as the escape \\u0000.
            problem = unstorable(body) if b"\\u0000" in raw else None
        if problem:
            raise ApiError("invalid_request_body", problem)
        return body

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if body is None:
            raise self._empty()
        check = compiled(self._schema)
        if check is not None and check(body):
            return None
        try:
            self._validator.validate(body)
        except ValidationError as exc:
            raise ApiError("invalid_request_body", _describe(exc)) from None
        except RecursionError:
            raise ApiError(
                "invalid_request_body", "The request body is nested too deeply."
            ) from None
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class CompiledJSONResponseBodyValidator(JSONResponseBodyValidator):  # type: ignore[misc]
    """Connexion's response check (a 500 naming the field), with the compiled schema first.

    Stored participations in the body were checked when they were written
    (`mock_server.documents`): when the jsonifier left the body's shape (`encoding.take_shape`),
    the shape is checked instead of the parsed bytes, against the schema with each
    VppParticipation replaced by a slot that takes exactly the placeholder of a stored
    document. So the envelope (a list's `object`, `url`, `has_more`, `data`) is checked on every
    response, and a stored document only where the spec expects a participation. Anything
    else, or a shape the slots refuse, is parsed and checked whole, as before.
    """

    def _parse(self, stream: Any) -> Any:
        chunks = [chunk for chunk in stream if chunk]
        if not chunks:
            return None
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        shape = take_shape(raw)
        if shape is not None:
            return _Shaped(raw, shape)
        return self._parse_raw(raw)

    def _parse_raw(self, raw: bytes) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return super()._parse(iter([raw]))

    @property
    def validator(self) -> Any:
        return _ResponseValidator(self._schema, format_checker=FORMAT_CHECKER)

    def _validate(self, body: Any) -> None:
        if isinstance(body, _Shaped):
            check_shape = with_stored_slots(self._schema)
            if check_shape is not None and check_shape(body.shape):
                return
            body = self._parse_raw(body.raw)
        check = compiled(self._schema, "response")
        if check is not None and check(body):
            return
        super()._validate(body)


class _Shaped:
    """A response body as encoded (`raw`) and its shape with stored documents as placeholders."""

    __slots__ = ("raw", "shape")

    def __init__(self, raw: bytes, shape: Any) -> None:
        self.raw = raw
        self.shape = shape


# What a VppParticipation becomes in a shape's schema: the placeholder, and nothing else.
_STORED_SLOT = {
    "type": "object",
    "required": [STORED_KEY],
    "properties": {STORED_KEY: {"enum": [True]}},
    "additionalProperties": False,
}
# id(schema) -> (schema, check of its shapes, or None when it has no VppParticipation)
_SLOTTED: dict[int, tuple[Any, Callable[[Any], bool] | None]] = {}


def _slot_participations(node: Any, participation: dict[str, Any], found: list[int]) -> Any:
    if isinstance(node, dict):
        # Connexion hangs the spec's `components` on the schemas it hands out (and the
        # compiled schema drops them): they are not part of what the body must be.
        own = {k: v for k, v in node.items() if k != "components"}
        if own == participation:
            found[0] += 1
            return _STORED_SLOT
        return {k: _slot_participations(v, participation, found) for k, v in own.items()}
    if isinstance(node, list):
        return [_slot_participations(item, participation, found) for item in node]
    return node


def with_stored_slots(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """`is_valid` of `schema` with each VppParticipation a slot for a stored document's
    placeholder (compiled once per schema); None if the schema has no VppParticipation."""
    hit = _SLOTTED.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    found = [0]
    slotted = _slot_participations(schema, participation_schema(), found)
    check = compiled(slotted, "response") if found[0] else None
    _SLOTTED[id(schema)] = (schema, check)  # `compiled` keeps `slotted` alive with its check
    return check

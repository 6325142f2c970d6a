"""Request checks in the error catalogue's terms: parameters, JSON bodies and body size.

Validation is never skipped, only made fast: every schema is compiled once with jsonschema-rs
(Rust) and checked with it; only when it says "invalid" does Connexion's jsonschema validator run
again, to decide (it is the reference) and to name the field in the message. Response bodies
are validated the same way, except the stored participations in them: those were checked when
they were written (`mock_server.documents`), and only what is around them is checked again.
"""

from __future__ import annotations

import builtins
import functools
import json
import keyword
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import jsonschema_rs
import orjson
from connexion.json_schema import Draft4RequestValidator, Draft4ResponseValidator
from jsonschema import Draft4Validator, FormatChecker, ValidationError, validators
from jsonschema.exceptions import best_match
from starlette.types import Receive, Scope

from vpp_sandbox.mock_server.encoding import STORED_KEY
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.intake import replay
from vpp_sandbox.mock_server.request import facts_of

__all__ = [
    "FORMAT_CHECKER",
    "JSONBodyValidator",
    "ParameterValidator",
    "ResponseCheck",
    "compiled",
    "ecma_pattern",
    "unstorable",
    "validator_map",
]


class _JSONBodies(dict[str, Any]):
    """The body validators by media type: JSON's for every one. Connexion asks only for media
    types the operation consumes (it answers 415 to others first), and every operation of the
    specs consumes JSON alone; a plain mapping spares a pattern match per request."""

    def __missing__(self, media_type: str) -> type[JSONBodyValidator]:
        return JSONBodyValidator


def validator_map() -> dict[str, Any]:
    """Connexion's `validator_map` (its documented way to plug validation in): our parameter
    and JSON body validators. Responses are checked by the endpoints (`ResponseCheck`)."""
    return {"parameter": ParameterValidator, "body": _JSONBodies()}


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


_COERCE: Mapping[str, Callable[[str], Any]] = {
    "integer": int,
    "number": float,
    "boolean": lambda text: {"true": True, "false": False}[text.lower()],
}
_SUPPORTED_TYPES = frozenset({"string", "integer", "number", "boolean"})


def pythonic(name: str) -> str:
    """A parameter's argument name (`startingAfter` -> `starting_after`), with an underscore
    after a Python keyword or built-in (`format` -> `format_`), as Connexion names them."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("-", "_")
    if keyword.iskeyword(name) or hasattr(builtins, name):
        name += "_"
    return name


class _Parameter:
    """One parameter of an operation: its schema compiled once, its value read and checked."""

    __slots__ = ("argument", "check", "coerce", "default", "name", "required", "schema", "where")

    def __init__(self, definition: Mapping[str, Any]) -> None:
        self.name: str = definition["name"]
        self.where: str = definition["in"]
        self.schema: dict[str, Any] = definition.get("schema", {})
        kind = self.schema.get("type", "string")
        if self.where not in ("query", "path") or kind not in _SUPPORTED_TYPES:
            # Fail at start-up, loudly: the spec grew a parameter these checks do not read.
            raise ValueError(
                f"parameter {self.name!r} ({self.where}, {kind}) is not supported by "
                "mock_server.validation: only scalar query and path parameters are"
            )
        self.argument = pythonic(self.name)
        self.required = bool(definition.get("required")) or self.where == "path"
        self.default = self.schema.get("default")
        self.coerce = _COERCE.get(kind)
        self.check = compiled(self.schema, "parameter")

    def value(self, text: str, location: str) -> Any:
        """The parameter's value from its text, or a 400 naming it and saying what it must be."""
        value: Any = text
        if self.coerce is not None:
            try:
                value = self.coerce(text)
            except (ValueError, KeyError):
                raise self.invalid(location) from None
        if self.check is not None and self.check(value):
            return value
        try:  # the reference (and the arbiter where jsonschema-rs was stricter)
            _ParameterValidator(self.schema, format_checker=FORMAT_CHECKER).validate(value)
        except ValidationError:
            raise self.invalid(location) from None
        return value

    def invalid(self, location: str) -> ApiError:
        hint = _PARAM_HINTS.get(self.name, f"{self.name} does not match its schema.")
        return ApiError("invalid_parameter", f"Invalid {location} parameter: {hint}")


class ParameterPlan:
    """An operation's parameters, prepared once: what every request of it is checked against."""

    def __init__(self, definitions: Sequence[Mapping[str, Any]], strict: bool) -> None:
        self.definitions = definitions  # kept: its id keys the cache of plans
        self.strict = strict
        parameters = [_Parameter(d) for d in definitions]
        self.query = {p.name: p for p in parameters if p.where == "query"}
        self.path = [p for p in parameters if p.where == "path"]
        self.defaults = {
            p.argument: p.default for p in self.query.values() if p.default is not None
        }
        self.allowed = ", ".join(sorted(self.query)) or "none"

    def arguments(self, scope: Scope) -> dict[str, Any]:
        """The handler's arguments from the request's query string and path: checked, typed."""
        arguments = dict(self.defaults)
        raw: bytes = scope.get("query_string") or b""
        if raw:
            pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
            names = [name for name, _ in pairs]
            if self.strict and not self.query.keys() >= set(names):
                extra = ", ".join(sorted(set(names) - self.query.keys()))
                raise ApiError(
                    "invalid_parameter",
                    f"Unknown query parameter(s): {extra}. Allowed: {self.allowed}.",
                )
            if len(set(names)) != len(names):
                twice = sorted({name for name in names if names.count(name) > 1})
                raise ApiError(
                    "invalid_parameter", f"Send the query parameter {twice[0]} at most once."
                )
            for name, text in pairs:
                parameter = self.query.get(name)
                if parameter is not None:
                    arguments[parameter.argument] = parameter.value(text, "query")
        for parameter in self.path:
            text = scope.get("path_params", {}).get(parameter.name)
            if text is None:  # pragma: no cover - routing matched without it
                raise parameter.invalid("path")
            arguments[parameter.argument] = parameter.value(str(text), "path")
        return arguments


# id(definitions) -> plan: Connexion hands every request of an operation the same list.
_PLANS: dict[int, ParameterPlan] = {}


class ParameterValidator:
    """Connexion's `validator_map["parameter"]`: each request's path and query parameters are
    checked (a 400 `invalid_parameter` that says what the value must be) and left, typed and
    with their defaults, in the request's facts for the handler."""

    def __init__(
        self,
        parameters: Sequence[Mapping[str, Any]],
        uri_parser: Any = None,
        strict_validation: bool = False,
        security_query_params: Sequence[str] | None = None,
    ) -> None:
        plan = _PLANS.get(id(parameters))
        if plan is None or plan.definitions is not parameters or plan.strict != strict_validation:
            plan = _PLANS[id(parameters)] = ParameterPlan(parameters, strict_validation)
        self.plan = plan

    def validate(self, scope: Scope) -> None:
        facts_of(scope).arguments = self.plan.arguments(scope)


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
    if kind == "oneOf" and isinstance(error.schema.get("discriminator"), dict):
        return _by_discriminator(error, where)
    if kind == "not" and isinstance(value, dict) and value.get("description"):
        return f"{where}: {value['description']}"
    if kind in ("oneOf", "anyOf"):
        options = " or ".join(_alternative(option) for option in value)
        about = str(error.schema.get("description", "")).strip()
        return f"{where} must be {options}." + (f" ({about})" if about else "")
    message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
    return f"{where} is not valid: {message}."


def _by_discriminator(error: ValidationError, where: str) -> str:
    """What is wrong in the oneOf branch the discriminator names, or the values it takes."""
    name = error.schema["discriminator"].get("propertyName")
    value = error.instance.get(name) if isinstance(error.instance, dict) else None
    known: list[Any] = []
    for i, option in enumerate(error.validator_value):
        allowed = option.get("properties", {}).get(name, {}).get("enum", ())
        known += [v for v in allowed if v not in known]
        found = [e for e in error.context if e.schema_path and e.schema_path[0] == i]
        if value in allowed and found:
            return _describe(best_match(found))
    return f"{where}.{name} must be one of {', '.join(map(str, known))}."


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
        longest = f" of at most {schema['maxLength']} characters" if "maxLength" in schema else ""
        return f"{article} {kind} like {schema['example']}{longest}"
    if "pattern" in schema:
        return f"{article} {kind} matching {schema['pattern']}"
    return f"{article} {kind}"


_UTF8_NAMES = frozenset({"utf8", "ascii", "usascii"})


class JSONBodyValidator:
    """Connexion's `validator_map["body"]` for JSON: the body is parsed once, checked against the
    operation's schema (a 400 `invalid_request_body` naming the field), and left in the request's
    facts for the handler. The intake has read it whole already (size and time bounded)."""

    def __init__(
        self,
        *,
        schema: dict[str, Any],
        required: bool = False,
        nullable: bool = False,
        encoding: str = "utf-8",
        strict_validation: bool = False,
        uri_parser: Any = None,
    ) -> None:
        self.schema = schema
        self.required = required
        self.encoding = encoding

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        body = self.parse(raw)
        if body is None:
            if self.required:
                raise self.empty()
        else:
            self.validate(body)
        facts_of(scope).body = body
        return replay(raw, receive), scope

    def empty(self) -> ApiError:
        fields = ", ".join(self.schema.get("required", ()))
        what = f"a JSON object with {fields}" if fields else "a JSON object"
        return ApiError(
            "invalid_request_body",
            f"The request body is empty; send {what} (see the API reference at /ui/).",
        )

    def parse(self, raw: bytes) -> Any:
        if self.encoding.lower().replace("-", "").replace("_", "") not in _UTF8_NAMES:
            raise ApiError(
                "unsupported_media_type",
                f"charset={self.encoding} is not supported: JSON bodies are UTF-8. Encode the "
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

    def validate(self, body: Any) -> None:
        check = compiled(self.schema)
        if check is not None and check(body):
            return
        try:
            _RequestValidator(self.schema, format_checker=FORMAT_CHECKER).validate(body)
        except ValidationError as exc:
            raise ApiError("invalid_request_body", _describe(exc)) from None
        except RecursionError:
            raise ApiError(
                "invalid_request_body", "The request body is nested too deeply."
            ) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class ResponseCheck:
    """An answer's body checked against the operation's response schema, compiled once.

    Stored participations in it were checked when they were written (`mock_server.documents`):
    the handler's data is checked as its shape (`encoding.shape_of`: each stored document a
    placeholder), against the schema with each VppParticipation a slot that takes exactly the
    placeholder. So the envelope (a list's `object`, `url`, `has_more`, `data`) is checked on
    every answer, and a stored document only where the spec expects a participation.
    """

    def __init__(self, schema: dict[str, Any], participation: dict[str, Any]) -> None:
        self.schema = schema
        found = [0]
        slotted = _slot_participations(schema, participation, found)
        self.shaped = compiled(slotted, "response") if found[0] else None
        self.plain = compiled(schema, "response")

    def problem(self, data: Any, shape: Any | None, encoded: bytes) -> str | None:
        """Why the answer breaks its schema (for the log), or None when it conforms."""
        if shape is not None and self.shaped is not None and self.shaped(shape):
            return None
        body = self.parse(encoded)
        if self.plain is not None and self.plain(body):
            return None
        try:
            _ResponseValidator(self.schema, format_checker=FORMAT_CHECKER).validate(body)
        except ValidationError as exc:
            return f"{exc.message} at {'/'.join(str(p) for p in exc.absolute_path) or '(root)'}"
        return None

    @staticmethod
    def parse(encoded: bytes) -> Any:
        """The answer as JSON values, for a check of the whole of it."""
        return orjson.loads(encoded)


# What a VppParticipation becomes in a shape's schema: the placeholder, and nothing else.
_STORED_SLOT = {
    "type": "object",
    "required": [STORED_KEY],
    "properties": {STORED_KEY: {"enum": [True]}},
    "additionalProperties": False,
}


def _slot_participations(node: Any, participation: dict[str, Any], found: list[int]) -> Any:
    if isinstance(node, dict):
        # A resolved spec may carry `components` beside a schema: not part of what a body is.
        own = {k: v for k, v in node.items() if k != "components"}
        if own == participation:
            found[0] += 1
            return _STORED_SLOT
        return {k: _slot_participations(v, participation, found) for k, v in own.items()}
    if isinstance(node, list):
        return [_slot_participations(item, participation, found) for item in node]
    return node

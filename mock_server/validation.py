"""Request checks in the error catalogue's terms: parameters, JSON bodies and body size."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.validators import ParameterValidator
from connexion.validators.json import JSONRequestBodyValidator
from jsonschema import ValidationError
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_server.errors import ApiError

__all__ = [
    "BodyLimitMiddleware",
    "FlatpeakJSONBodyValidator",
    "FlatpeakParameterValidator",
    "validator_map",
]


def validator_map() -> dict[str, Any]:
    """Connexion's `validator_map` with our parameter and JSON body validators."""
    return {
        "parameter": FlatpeakParameterValidator,
        "body": MediaTypeDict({"*/*json": FlatpeakJSONBodyValidator}),
    }


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
            raw = QueryParams(request.scope.get("query_string", b""))
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
        return f"{where} has unknown field(s) {', '.join(extra)}; the fields are {known}."
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
    message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
    return f"{where} is not valid: {message}."


_UTF8_NAMES = frozenset({"utf8", "ascii", "usascii"})


class FlatpeakJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """Connexion's JSON body checks, raising catalogue errors (400 invalid_request_body)."""

    async def _parse(self, stream: Any, scope: Scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        if self._encoding.lower().replace("-", "").replace("_", "") not in _UTF8_NAMES:
            raise ApiError(
                "invalid_request_body",
                f"charset={self._encoding} is not accepted; JSON bodies are UTF-8 (send "
                "Content-Type: application/json).",
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
            return json.loads(text, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError, RecursionError) as exc:
            raise ApiError(
                "invalid_request_body",
                f"The request body is not valid JSON ({exc}). Send a JSON object.",
            ) from None

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if body is None:
            raise ApiError(
                "invalid_request_body",
                "The request body is empty; send a JSON object (see the API reference at /ui/).",
            )
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


# -- body size limit ----------------------------------------------------------------------------


class BodyLimitMiddleware:
    """Reads the body up front; too large (or a bad Content-Length) is answered as an error."""

    def __init__(self, app: ASGIApp, *, limit: int, render: Callable[..., Any]) -> None:
        self.app = app
        self.limit = limit
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self.render(
                    scope,
                    send,
                    "invalid_request_body",
                    "The Content-Length header is not a number; let your HTTP client set it.",
                )
                return
            if int(declared) > self.limit:
                await self._too_large(scope, send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await self.render(
            scope,
            send,
            "request_too_large",
            f"The request body is larger than {self.limit} bytes; send a smaller body.",
        )

"""Every participation is checked against the spec's VppParticipation once: when it is written.

The store is handed `encode_checked` (`stores.open_store`) and encodes every participation it
writes with it (create, update, autopilot move), inside the transaction; a world's loader
checks the documents it encodes itself (`check_document`). A document that breaks the spec is
a sandbox bug, raised as `InvalidDocument` (a 500) before anything is committed. Reads then
answer with the stored text as it is (`encoding.stored`), and the answer's check looks only at
what is around it (`validation.ResponseCheck`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import orjson
from connexion.json_schema import Draft4ResponseValidator, format_error_with_path, resolve_refs
from jsonschema import Draft4Validator, ValidationError

from vpp_sandbox import openapi
from vpp_sandbox.mock_server.lifecycle import Participation
from vpp_sandbox.mock_server.validation import compiled

__all__ = [
    "SCHEMA_NAME",
    "InvalidDocument",
    "check_document",
    "encode_checked",
    "participation_schema",
    "prepare",
]

SCHEMA_NAME = "VppParticipation"


class InvalidDocument(Exception):
    """A participation the sandbox was about to store breaks the spec; nothing was stored."""

    def __init__(self, participation_id: str, problem: str) -> None:
        super().__init__(
            f"sandbox bug: participation {participation_id} does not conform to {SCHEMA_NAME} "
            f"({problem}); it was not stored"
        )
        self.participation_id = participation_id
        self.problem = problem


@cache
def participation_schema() -> dict[str, Any]:
    """The spec's VppParticipation with every $ref resolved, as Connexion resolves them."""
    spec = resolve_refs(openapi.load(openapi.CONTRACT))
    schema: dict[str, Any] = spec["components"]["schemas"][SCHEMA_NAME]
    return schema


@cache
def _compiled() -> Callable[[Any], bool]:
    # The "response" kind: exactly the check response validation made on every read.
    check = compiled(participation_schema(), "response")
    if check is None:  # pragma: no cover - the spec changed into something jsonschema-rs refuses
        raise RuntimeError(f"{SCHEMA_NAME} cannot be compiled with jsonschema-rs")
    return check


def prepare() -> None:
    """Resolve and compile the schema now (app start-up, about 10 ms), not on the first write.

    What is built at start-up is frozen out of the garbage collector's sight with the rest
    (`server.FreezeAfterStartup`); built later, every full collection would walk it again.
    """
    _compiled()


def check_document(text: str | bytes) -> None:
    """Raise `InvalidDocument` unless `text` is a VppParticipation as the spec defines it.

    jsonschema-rs decides in the common case; a document it rejects goes to Connexion's
    response validator (jsonschema, the reference), which decides and words the problem.
    """
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidDocument("(unknown)", f"not JSON: {exc}") from None
    if _compiled()(document):
        return
    validator = Draft4ResponseValidator(
        participation_schema(), format_checker=Draft4Validator.FORMAT_CHECKER
    )
    try:
        validator.validate(document)
    except ValidationError as exc:
        pid = document.get("id") if isinstance(document, dict) else None
        raise InvalidDocument(
            str(pid or "(no id)"), f"{exc.message}{format_error_with_path(exc)}"
        ) from None


def encode_checked(participation: Participation) -> str:
    """The participation's stored document, checked against the spec (`InvalidDocument`)."""
    text = participation.encode()
    check_document(text)
    return text

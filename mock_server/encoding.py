"""JSON answers encoded with orjson, and stored JSON passed through as it is.

A handler puts a stored participation into its answer as `stored(text)`: the text is written
into the response without being decoded and encoded again. It was checked against the spec
when it was written (`mock_server.documents`), so the answer's check need not parse it again:
`shape_of` gives the answer with every stored document replaced by `STORED_PLACEHOLDER`, which
the response check accepts only where the spec expects a VppParticipation
(`validation.ResponseCheck`).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["STORED_KEY", "STORED_PLACEHOLDER", "Stored", "dumps", "shape_of", "stored"]

Stored = orjson.Fragment

# What stands for a stored document in a response's shape: an object no API object can be
# (a key with a NUL character), so only a schema made to accept it does.
STORED_KEY = "\x00stored"
STORED_PLACEHOLDER: dict[str, bool] = {STORED_KEY: True}


def stored(text: str) -> Stored:
    """Stored JSON text (checked when it was written), sent without decoding and encoding."""
    return orjson.Fragment(text)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _NotPlain(Exception):
    """A value whose JSON form is not itself (a Decimal, a datetime, NaN, a subclass)."""


def _shape(value: Any, found: list[bool]) -> Any:
    kind = type(value)
    if kind is orjson.Fragment:
        found[0] = True
        return STORED_PLACEHOLDER
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            out[key] = _shape(item, found)
        return out
    if kind is list:
        return [_shape(item, found) for item in value]
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float and math.isfinite(value):
        return value
    raise _NotPlain  # orjson writes it in another form (or as null): validate the bytes


def shape_of(data: Any) -> Any | None:
    """`data` with every stored document replaced by the placeholder; None if it holds none,
    or holds anything whose JSON is not itself (then only the encoded bytes say the truth)."""
    found = [False]
    try:
        shape = _shape(data, found)
    except _NotPlain:
        return None
    return shape if found[0] else None


def dumps(data: Any) -> bytes:
    """An answer's JSON bytes (stored documents written as they are)."""
    return orjson.dumps(data, default=_default, option=orjson.OPT_NAIVE_UTC)

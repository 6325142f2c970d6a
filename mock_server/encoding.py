"""JSON responses encoded with orjson, and stored JSON passed through as it is."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from connexion.jsonifier import Jsonifier

__all__ = ["OrjsonJsonifier", "Stored", "stored"]

Stored = orjson.Fragment


def stored(text: str) -> Stored:
    """Stored JSON text, written into a response without being decoded and encoded again."""
    return orjson.Fragment(text)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class OrjsonJsonifier(Jsonifier):  # type: ignore[misc]
    """Connexion's jsonifier with orjson: several times faster than `json.dumps` on a page."""

    def dumps(self, data: Any, **kwargs: Any) -> bytes:
        return orjson.dumps(data, default=_default, option=orjson.OPT_NAIVE_UTC)

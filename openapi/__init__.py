"""The specs, shipped as package data: read them here, never by a path into the source tree."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import yaml

__all__ = ["CONTRACT", "CONTROL", "load", "text"]

CONTRACT = "vpp-participations.yaml"
CONTROL = "sandbox-control.yaml"


def text(name: str = CONTRACT) -> str:
    """The spec file's text (`CONTRACT` or `CONTROL`)."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


@cache
def _parsed(name: str) -> Any:
    return yaml.safe_load(text(name))


def load(name: str = CONTRACT) -> dict[str, Any]:
    """The spec as a fresh dict (callers may change their copy)."""
    import copy

    spec: dict[str, Any] = copy.deepcopy(_parsed(name))
    return spec

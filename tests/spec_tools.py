"""Helpers for tests that read an OpenAPI document: $ref inlining and operation listing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def resolve_refs(spec: dict[str, Any], node: Any) -> Any:
    """Inline every local $ref (our specs have no recursive references)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve_refs(spec, target)
        return {k: resolve_refs(spec, v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_refs(spec, v) for v in node]
    return node


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) for every operation of the document."""
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]

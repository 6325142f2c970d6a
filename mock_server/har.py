"""The request journal as a HAR 1.2 log, for the HAR viewers of browsers and other tools."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import orjson

from vpp_sandbox.mock_server.journal import Entry

__all__ = ["har_log"]


def har_log(entries: Iterable[Entry], base_url: str, version: str) -> dict[str, Any]:
    """A HAR 1.2 `log` of the entries, oldest first (the journal keeps no headers or bodies:
    sizes are -1, "unknown" in HAR, and an error's content is its code and message)."""
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "vpp-sandbox", "version": version},
            "entries": [_entry(e, base_url) for e in entries],
        }
    }


def _entry(entry: Entry, base_url: str) -> dict[str, Any]:
    url = base_url + entry.path + (f"?{entry.query}" if entry.query else "")
    content: dict[str, Any] = {"size": -1, "mimeType": "application/json"}
    if entry.code is not None:
        text = orjson.dumps({"code": entry.code, "message": entry.message or ""}).decode()
        content = {"size": len(text), "mimeType": "application/json", "text": text}
    try:
        reason = HTTPStatus(entry.status).phrase
    except ValueError:
        reason = ""
    return {
        "startedDateTime": entry.time,
        "time": round(entry.latency_ms, 3),
        "request": {
            "method": entry.method,
            "url": url,
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [],
            "queryString": [
                {"name": k, "value": v} for k, v in parse_qsl(entry.query, keep_blank_values=True)
            ],
            "headersSize": -1,
            "bodySize": -1,
        },
        "response": {
            "status": entry.status,
            "statusText": reason,
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [{"name": "X-Request-Id", "value": entry.request_id}],
            "content": content,
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        },
        "cache": {},
        "timings": {"send": 0, "wait": round(entry.latency_ms, 3), "receive": 0},
        "comment": entry.request_id,
    }

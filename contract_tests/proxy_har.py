"""The proxy's traffic as a HAR 1.2 log (`--har`), streamed to its file, secrets replaced.

Each exchange is written as it happens (memory stays flat however long the proxy runs), with
tokens and keys replaced by shell variables as in the violation log; the file is a whole HAR
document once `close()` has written its end.
"""

from __future__ import annotations

import json
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

from vpp_sandbox.contract_tests.proxy_report import redact_headers

__all__ = ["HarLog"]

RawHeaders = list[tuple[bytes, bytes]]


class HarLog:
    """A HAR file written entry by entry; opened at the first entry."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: TextIO | None = None
        self._entries = 0

    def record(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes,
        status: int, answer_headers: RawHeaders, raw: bytes, decoded: bytes | None,
        started: str, ms: float,
    ) -> None:  # fmt: skip
        """One exchange: the request as the client sent it, the answer as the upstream sent it
        (its text decoded, when it decoded)."""
        if self._file is None:
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
            creator = json.dumps({"name": "vpp-sandbox proxy", "version": "1"})
            self._file.write(f'{{"log": {{"version": "1.2", "creator": {creator}, "entries": [\n')
        answer = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer_headers]
        entry = {
            "startedDateTime": started,
            "time": round(ms, 3),
            "request": {
                "method": method, "url": url, "httpVersion": "HTTP/1.1", "cookies": [],
                "headers": _headers(headers),
                "queryString": [{"name": k, "value": v} for k, v in
                                parse_qsl(urlsplit(url).query, keep_blank_values=True)],
                "headersSize": -1, "bodySize": len(body),
                **({"postData": {"mimeType": "application/json",
                                 "text": body.decode("utf-8", "replace")}} if body else {}),
            },
            "response": {
                "status": status, "statusText": "", "httpVersion": "HTTP/1.1", "cookies": [],
                "headers": _headers(answer), "redirectURL": "",
                "content": {"size": len(raw), "mimeType": dict(
                    (k.lower(), v) for k, v in answer).get("content-type", ""),
                    "text": _text(raw if decoded is None else decoded)},
                "headersSize": -1, "bodySize": len(raw),
            },
            "cache": {},
            "timings": {"send": 0, "wait": round(ms, 3), "receive": 0},
        }  # fmt: skip
        self._file.write((",\n" if self._entries else "") + json.dumps(entry))
        self._file.flush()
        self._entries += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.write("\n]}}\n")
            self._file.close()
            self._file = None


def _text(raw: bytes) -> str:
    """An answer's body for the HAR file: a login's token replaced, as in the violation log."""
    if b'"bearer_token"' in raw:  # parsed only then: a large answer is not read twice
        data = _login(raw)
        if data is not None:
            return json.dumps({**data, "bearer_token": "$VPP_TOKEN"})
    return raw.decode("utf-8", "replace")


def _login(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict) and isinstance(data.get("bearer_token"), str):
        return data
    return None


def _headers(headers: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in redact_headers(dict(headers)).items()]

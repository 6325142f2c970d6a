"""What the suites test: an implementation at a URL or an in-process ASGI app, plus credentials."""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

__all__ = ["Credentials", "Exchange", "HttpClient", "Raw", "Target", "curl"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """An account id and one API key (`sk_test_…` or `sk_live_…`)."""

    account_id: str
    api_key: str

    @property
    def live_mode(self) -> bool:
        return self.api_key.startswith("sk_live_")

    @property
    def basic(self) -> str:
        raw = f"{self.account_id}:{self.api_key}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Target:
    """An implementation under test: `base_url` (HTTP) or `app` (ASGI, in-process)."""

    credentials: Credentials
    base_url: str = "http://testserver"
    app: Any = None
    second: Credentials | None = None
    # The target's token signing key, when the tester has it (staging only): it makes a
    # genuine expired token; without it that check is reported as not made.
    jwt_secret: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    @property
    def in_process(self) -> bool:
        return self.app is not None

    def client(self) -> HttpClient:
        return HttpClient(self)


@dataclass(frozen=True, slots=True)
class Raw:
    """A request body sent exactly as written (malformed JSON, or not JSON at all)."""

    text: str


@dataclass(slots=True)
class Exchange:
    """One request and its response, as the checks see them."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int
    response_headers: Mapping[str, str]
    text: str
    url: str
    data: Any = field(default=None)

    @property
    def json_ok(self) -> bool:
        return self.data is not None

    def curl(self) -> str:
        return curl(self.method, self.url, self.headers, self.body)


def curl(method: str, url: str, headers: Mapping[str, str], body: Any) -> str:
    """A copy-paste curl command; bearer tokens and Basic credentials become variables."""
    parts = ["curl", "-X", method]
    for name, value in headers.items():
        if name.lower() == "authorization" and value.startswith("Basic "):
            parts += ["-u", '"$VPP_ACCOUNT_ID:$VPP_API_KEY"']
        elif name.lower() == "authorization" and value.startswith("Bearer ") and len(value) > 60:
            parts += ["-H", '"Authorization: Bearer $VPP_TOKEN"']
        else:
            parts += ["-H", shlex.quote(f"{name}: {value}")]
    if body is not None:
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        parts += ["-d", shlex.quote(text)]
    parts.append(shlex.quote(url))
    return " ".join(parts)


class HttpClient:
    """requests for URLs, Starlette's TestClient for ASGI apps; same small interface."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._session: Any
        if target.in_process:
            from starlette.testclient import TestClient

            self._session = TestClient(target.app, base_url=target.base_url)
            self._session.__enter__()
        else:
            self._session = requests.Session()

    def close(self) -> None:
        if self.target.in_process:
            self._session.__exit__(None, None, None)
        else:
            self._session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Exchange:
        sent = dict(headers or {})
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        q = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (query or {}).items()}
        url = self.target.base_url + path + (("?" + urlencode(q)) if q else "")
        payload = None if body is None else body.text if isinstance(body, Raw) else json.dumps(body)
        if self.target.in_process:
            response = self._session.request(method, url, headers=sent, content=payload)
        else:
            response = self._session.request(method, url, headers=sent, data=payload, timeout=30)
        text = response.text
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        return Exchange(
            method=method,
            path=path,
            query=q,
            headers=sent,
            body=body.text if isinstance(body, Raw) else body,
            status=response.status_code,
            response_headers=dict(response.headers),
            text=text,
            url=url,
            data=data,
        )

    def login(self, credentials: Credentials) -> Exchange:
        return self.request("GET", "/login", headers={"Authorization": credentials.basic})

"""HTTP clients of a running sandbox: its accounts, a logged-in session, and its error.

Used by the pytest plugin (imported only once a fixture needs it) and by anyone scripting a
sandbox: `SandboxServer(base_url).create_account()` and `SandboxSession(base_url, token)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests

__all__ = ["TIMEOUT", "SandboxCallError", "SandboxServer", "SandboxSession", "checked"]

TIMEOUT = 30.0


class SandboxCallError(Exception):
    """The sandbox answered an error; the message has its error object, `code` its code."""

    def __init__(self, method: str, path: str, status: int, body: str, hint: str = "") -> None:
        self.method = method
        self.path = path
        self.status_code = status
        self.body = body
        error = _error_object(body)
        self.code: str | None = error.get("code")
        self.error_message: str | None = error.get("message")
        super().__init__(f"{method} {path} answered {status}: {body}{hint}")

    @classmethod
    def of(cls, method: str, path: str, response: requests.Response, hint: str = "") -> Any:
        return cls(method, path, response.status_code, response.text, hint)


def _error_object(body: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def checked(method: str, path: str, response: requests.Response, hint: str = "") -> Any:
    """The answer's JSON, or SandboxCallError with the sandbox's error object."""
    if not response.ok:
        raise SandboxCallError.of(method, path, response, hint)
    return response.json()


class SandboxSession(requests.Session):
    """A `requests.Session` that sends paths (`/vpp-participations`) to the sandbox's base URL.

    Loud by default: an error answer raises `SandboxCallError` with the sandbox's error object,
    so a 429 fails where it happened, not later as a `KeyError`. For a test that asserts on
    errors: `raise_on_error=False` per call, or the session's `raise_on_error` attribute.
    """

    def __init__(
        self, base_url: str, token: str | None = None, *, raise_on_error: bool = True
    ) -> None:
        super().__init__()
        self.base_url = base_url
        self.raise_on_error = raise_on_error
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        *args: Any,
        raise_on_error: bool | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        path = url
        if url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", TIMEOUT)
        response = super().request(method, url, *args, **kwargs)
        loud = self.raise_on_error if raise_on_error is None else raise_on_error
        if loud and response.status_code >= 400:
            raise SandboxCallError.of(method.upper(), path, response)
        return response


@dataclass
class SandboxServer:
    """A running sandbox: where it is, how to make and delete accounts on it, and its log."""

    base_url: str
    admin_key: str | None = None
    log: str | None = None  # the server's output, when the plugin started it

    def _admin(self) -> dict[str, str]:
        return {} if self.admin_key is None else {"Authorization": f"Bearer {self.admin_key}"}

    def create_account(self) -> dict[str, str]:
        """A new account: `account_id`, `test_key`, `live_key` (`POST /_sandbox/accounts`)."""
        path = "/_sandbox/accounts"
        r = requests.post(self.base_url + path, headers=self._admin(), timeout=TIMEOUT)
        hint = ""
        if r.status_code in (401, 403) and self.admin_key is None:
            hint = (
                "\nThis sandbox has an admin key: give it with --vpp-admin-key or "
                "VPP_SANDBOX_ADMIN_KEY."
            )
        created: dict[str, str] = checked("POST", path, r, hint)
        return created

    def delete_account(self, account_id: str, token: str | None = None) -> dict[str, Any]:
        """Delete an account and its data, with the admin key if known, else its own token."""
        path = f"/_sandbox/accounts/{account_id}"
        headers = self._admin() or {"Authorization": f"Bearer {token}"}
        r = requests.delete(self.base_url + path, headers=headers, timeout=TIMEOUT)
        deleted: dict[str, Any] = checked("DELETE", path, r)
        return deleted

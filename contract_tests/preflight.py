"""Before a contract run: is the base URL one the suites can use? One line that says what to fix.

A URL without `http://`, a server that cannot be reached, or a path that is not the API's root
would otherwise show as a traceback per test, or as advice about the account id.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

__all__ = ["problem_with"]

_WHERE = "--base-url (VPP_TEST_BASE_URL)"


def problem_with(base_url: str, *, timeout: float = 10.0) -> str | None:
    """What is wrong with `base_url` for a contract run, or None."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return (
            f"{_WHERE} {base_url!r} is not an http:// or https:// URL; give the API's root, "
            "e.g. http://127.0.0.1:8080"
        )
    login = base_url.rstrip("/") + "/login"
    try:
        answer = requests.get(login, timeout=timeout, allow_redirects=False)
    except requests.exceptions.ConnectionError as exc:
        reason = _reason(exc)
        return (
            f"{_WHERE} {base_url} cannot be reached ({reason}); is the server running, and are "
            "the host and port right?"
        )
    except requests.exceptions.Timeout:
        return f"{_WHERE} {base_url} did not answer GET /login within {timeout:g} seconds"
    except requests.exceptions.RequestException as exc:
        return f"{_WHERE} {base_url}: {exc}"
    if answer.status_code == 404:
        return (
            f"{_WHERE} {base_url}: GET {login} answered 404, so this is not the API's root; "
            "give the URL before /login and /vpp-participations (with its base path, if any)"
        )
    return None


def _reason(exc: Exception) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "No route to host",
                  "Temporary failure in name resolution", "timed out"):
        if known in text:
            return known.lower()
    return "connection failed"

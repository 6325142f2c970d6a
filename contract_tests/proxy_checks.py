"""What the proxy checks on an exchange besides the suite's predicates of `checks.py`.

- The response against the spec, with Schemathesis' own conformance checks (the ones the
  `conformance` suite runs on every response): status code, Content-Type, headers and body
  documented for the operation. Reported as rule ``schema``.
- Rule 15 on each page, against the participations the ledger already knows in the token's
  namespace. The suite proves rule 15 with walks it drives; a proxy sees whatever pages the
  client asks for, so it judges each page by itself: every item after (before) the cursor,
  no known participation missing from the range the page covers, and `has_more` false only
  when no known participation lies beyond it. The contract has no delete, so a participation
  seen once stays listable (the sandbox's reset and world load are handled by the proxy).

Every failure is (check name, message), the message starting ``rule R (check):
participation P:`` as the suite's do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import requests
import schemathesis
from requests.structures import CaseInsensitiveDict
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from vpp_sandbox import openapi
from vpp_sandbox.contract_tests.ledger import Identity, Ledger, Observation, participations_in
from vpp_sandbox.contract_tests.target import Exchange

__all__ = ["PAGE_CHECKS", "RULE_OF", "SCHEMA_CHECKS", "SpecConformance", "check_page"]

SCHEMA_CHECKS: tuple[Callable[..., Any], ...] = (
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
PAGE_CHECKS = ("page_follows_cursor", "page_has_every_known_item", "has_more_matches_known_items")
RULE_OF: dict[str, str] = {
    **{check.__name__: "schema" for check in SCHEMA_CHECKS},
    **dict.fromkeys(PAGE_CHECKS, "15"),
}
_LIST_PARAMETERS = frozenset({"limit", "starting_after", "ending_before", "device_id"})

Failure = tuple[str, str]
Key = tuple[datetime, str]


def _message(check: str, pid: object, text: str) -> Failure:
    return check, f"rule {RULE_OF[check]} ({check}): participation {pid}: {text}"


class SpecConformance:
    """Schemathesis' response checks for one exchange, on the operation the spec documents."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.schema = schemathesis.openapi.from_dict(spec or openapi.load())

    def operation(self, method: str, path: str) -> Any:
        """The spec's operation for a request, or None (undocumented path or method)."""
        return self.schema.find_operation_by_path(method, path)

    def check(self, exchange: Exchange, content: bytes, pid: str) -> list[Failure]:
        operation = self.operation(exchange.method, exchange.path)
        if operation is None or _shape_probe(operation, exchange.headers):
            return []
        # A PreparedRequest filled in by hand: `prepare()` would reject odd requests that the
        # client did send and the server did answer.
        request = requests.PreparedRequest()
        request.method = exchange.method
        request.url = exchange.url
        request.headers = CaseInsensitiveDict(exchange.headers)
        request.body = None
        headers: dict[str, list[str]] = {}
        for name, value in exchange.response_headers.items():
            headers.setdefault(name.lower(), []).append(value)
        response = Response(
            status_code=exchange.status,
            headers=headers,
            content=content,
            request=request,
            elapsed=0.0,
            verify=True,
            message="",
            encoding="utf-8",
            http_version="1.1",
        )
        case = operation.Case(
            method=exchange.method,
            path_parameters=_path_parameters(operation.path, exchange.path),
            query=dict(exchange.query),
        )
        failures: list[Failure] = []
        for check in SCHEMA_CHECKS:
            try:
                case.validate_response(response, checks=[check])
            except FailureGroup as group:
                for failure in group.exceptions:
                    failures.append(_message(check.__name__, pid, _describe(failure)))
            except AssertionError as exc:
                failures.append(_message(check.__name__, pid, str(exc).split("\n\n")[0]))
            except Exception as exc:  # a check that cannot judge must not stop the proxy
                text = f"could not evaluate the response: {type(exc).__name__}: {exc}"
                failures.append(_message(check.__name__, pid, text))
        return failures


def _shape_probe(operation: Any, headers: dict[str, str]) -> bool:
    """A request whose Content-Type the operation does not declare (or a malformed one).

    The spec says nothing about the answer to such a request beyond §7 (an error object,
    never a 5xx), which `checks.py` judges; Schemathesis skips its conformance checks on these
    "request-shape probes" for the same reason.
    """
    sent = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if sent is None:
        return False
    media = sent.split(";", 1)[0].strip().lower()
    declared = {str(body.media_type).lower() for body in operation.body}
    kind, slash, sub = media.partition("/")
    return not (kind and slash and sub) or media not in declared


def _describe(failure: Any) -> str:
    """Title and the first paragraph or two of a Schemathesis failure, on one line."""
    title = str(getattr(failure, "title", "") or type(failure).__name__)
    text = str(getattr(failure, "message", "") or "")
    paragraphs = [p for p in text.split("\n\n") if p and not p.startswith("Schema at")][:2]
    body = " ".join(" ".join(p.split()) for p in paragraphs)
    return f"{title}: {body}" if body else title


def _path_parameters(template: str, path: str) -> dict[str, str]:
    names, values = template.strip("/").split("/"), path.strip("/").split("/")
    return {
        n[1:-1]: v
        for n, v in zip(names, values, strict=False)
        if n.startswith("{") and n.endswith("}")
    }


# -- rule 15 on each page ------------------------------------------------------------------------


def _key(p: Any) -> Key | None:
    if not isinstance(p, dict) or not isinstance(p.get("id"), str):
        return None
    value = p.get("time_created")
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00").astimezone(UTC), p["id"]
    except ValueError:
        return None


def _known(ledger: Ledger, identity: Identity, device: str | None) -> list[tuple[Key, str]]:
    known = []
    for pid, seen in list(ledger.objects.items()):
        if seen.owner != identity or (device is not None and seen.view.get("device_id") != device):
            continue
        key = _key(seen.view)
        if key is not None:
            known.append((key, pid))
    return known


def check_page(ledger: Ledger, exchange: Exchange, identity: Identity | None) -> list[Failure]:
    """Rule 15 on one 2xx list page, against the namespace's known participations."""
    obs = Observation(exchange, identity)
    if obs.operation != "listVppParticipations" or not 200 <= exchange.status < 300:
        return []
    query = exchange.query
    after, before = query.get("starting_after"), query.get("ending_before")
    data = exchange.data
    if identity is None or set(query) - _LIST_PARAMETERS or (after and before):
        return []  # what this page should hold is unknown (list_page_is_well_formed judges it)
    if not isinstance(data, dict) or not isinstance(data.get("has_more"), bool):
        return []
    items = list(participations_in(data))
    keys = [_key(p) for p in items]
    if not all(k is not None for k in keys) or keys != sorted(keys, reverse=True):  # type: ignore[type-var]
        return []  # not newest first: list_page_is_well_formed says so
    page: list[Key] = [k for k in keys if k is not None]
    failures: list[Failure] = []
    cursor_id = after or before
    cursor: Key | None = None
    if cursor_id:
        seen = ledger.objects.get(cursor_id)
        if seen is None or seen.owner != identity:
            return []  # a cursor the ledger cannot place: nothing more to judge
        cursor = _key(seen.view)
        if cursor is None:
            return []
        for key in page:
            wrong = key >= cursor if after else key <= cursor
            if wrong:
                side = "older" if after else "newer"
                word = "starting_after" if after else "ending_before"
                failures.append(_message(
                    "page_follows_cursor", key[1],
                    f"on the page for {word}={cursor_id} but not {side} than it",
                ))
    if failures:
        return failures
    known = _known(ledger, identity, query.get("device_id"))
    on_page = {k[1] for k in page}
    failures += _missing(known, on_page, page, cursor, bool(after), bool(before), exchange)
    if not data["has_more"] and page:
        # Nothing lies beyond the page in its direction: older after the last item (no cursor
        # or starting_after), newer before the first one (ending_before).
        beyond = [pid for key, pid in known if (key > page[0] if before else key < page[-1])]
        if beyond:
            failures.append(_message(
                "has_more_matches_known_items", beyond[0],
                f"has_more is false on {exchange.method} {_target(exchange)}, but "
                f"{len(beyond)} known participation(s) of this namespace lie beyond the page",
            ))
    return failures


def _missing(
    known: Iterable[tuple[Key, str]],
    on_page: set[str],
    page: list[Key],
    cursor: Key | None,
    after: bool,
    before: bool,
    exchange: Exchange,
) -> list[Failure]:
    """Known participations inside the range the page covers, but not on it."""
    missing = []
    for key, pid in known:
        if pid in on_page:
            continue
        if before:
            assert cursor is not None
            inside = cursor < key and (not page or key < page[0])
        else:
            newer_bound = cursor if after else None
            below = newer_bound is None or key < newer_bound
            inside = below and (not page or key > page[-1])
        if inside:
            missing.append(pid)
    if not missing:
        return []
    return [_message(
        "page_has_every_known_item", missing[0],
        f"missing from {exchange.method} {_target(exchange)} although it lies within the "
        f"range the page covers ({len(missing)} known participation(s) missing)",
    )]


def _target(exchange: Exchange) -> str:
    query = "&".join(f"{k}={v}" for k, v in exchange.query.items())
    return exchange.path + (f"?{query}" if query else "")

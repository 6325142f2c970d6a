"""A request's facts, established once and kept in its ASGI scope for every later layer.

The front middleware makes a `Facts` per request (its id, when it started); the caller is
identified once (`Caller`: the verified token's namespace, or why it is not valid); the
namespace's clock is read once; Connexion's routing middleware names the operation; our
validators leave the parsed parameters and body. The journal, the faults, the security
functions, the handlers and the one error renderer read them here instead of working them out
again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.types import Scope

from vpp_sandbox.mock_server.clock import ClockState, Namespace
from vpp_sandbox.mock_server.settings import Account
from vpp_sandbox.mock_server.store import Page, PageQuery

__all__ = ["ROUTING", "SCOPE_KEY", "Caller", "Facts", "facts_of", "operation_of", "routed"]

# Where the facts live in the ASGI scope (a key of our own, beside the server's and Connexion's).
SCOPE_KEY = "vpp_sandbox"
# Connexion's routing middleware names the operation in the scope's extensions under this key
# (`api_base_path`, `operation_id`), which its routed middlewares read too.
ROUTING = ROUTING_CONTEXT


@dataclass(slots=True)
class Caller:
    """Who sent the request, from its Authorization header, checked once.

    `claims` are a valid bearer token's (`account_id`, `live_mode`, `sub`, ...); `problem` is
    the error a bearer-protected operation answers when the token is missing or not valid
    (None when nothing was sent); `admin` is the sandbox's admin key.
    """

    scheme: str = ""  # "bearer", "basic" or "" (none, or another scheme)
    credentials: str = ""
    claims: dict[str, Any] | None = None
    problem: Exception | None = None
    admin: bool = False
    # The account whose API key logged in (GET /login, HTTP Basic), and its namespace.
    account: Account | None = None
    login: Namespace | None = None

    @property
    def namespace(self) -> Namespace | None:
        if self.claims is None:
            return None
        return Namespace(str(self.claims["account_id"]), bool(self.claims["live_mode"]))


@dataclass(slots=True)
class Facts:
    """What is known about one request; each field is set once, by the layer that knows it."""

    request_id: str
    caller: Caller = field(default_factory=Caller)
    # The namespace's clock as read at the start of the request (None: not read yet).
    clock: ClockState | None = None
    # The earliest due autopilot step of the namespace, read with the clock.
    earliest_due: str | None = None
    # Whether fault rules wait for the namespace (/_sandbox/faults), read with the clock.
    faults: bool = False
    # A retrieve's participation, read with the clock (its stored JSON; None: not found).
    prefetched_id: str | None = None
    prefetched: str | None = None
    # A list's page, read with the clock for the arguments the list will be called with (None:
    # not a list, or its arguments are refused: the read happens, if at all, in the handler).
    page_query: PageQuery | None = None
    prefetched_page: Page | None = None
    now: datetime | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    # The error answered, for the journal: (code, message).
    error: tuple[str, str] | None = None


def facts_of(scope: Scope) -> Facts:
    """The request's facts (the front middleware puts them in every HTTP scope)."""
    facts: Facts = scope[SCOPE_KEY]
    return facts


def operation_of(scope: Scope) -> str | None:
    """The operationId Connexion's routing matched, or None (no route, or before routing)."""
    routing = scope.get("extensions", {}).get(ROUTING)
    return None if routing is None else routing.get("operation_id")


def routed(scope: Scope) -> tuple[str, str] | None:
    """(API base path, operationId) Connexion's routing matched, or None.

    Both are needed: Connexion's routed middlewares (security, validation) find an operation by
    the pair, and pass a request on untouched when its base path is not one of theirs (a path
    with a newline matched an operation but not its API's mount).
    """
    routing = scope.get("extensions", {}).get(ROUTING)
    if routing is None or routing.get("operation_id") is None:
        return None
    return str(routing.get("api_base_path")), str(routing["operation_id"])

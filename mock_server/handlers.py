"""HTTP handlers: thin adapters from a request's facts to the service and the lifecycle.

Each takes the request's `Facts` (the caller, the namespace's clock as read once) and its
checked arguments (path and query parameters by their Python names, `body` where the
operation has one), and returns `(body, status)` or `(body, status, headers)`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vpp_sandbox.mock_server import autopilot
from vpp_sandbox.mock_server.accounts import Accounts
from vpp_sandbox.mock_server.admission import Admission
from vpp_sandbox.mock_server.auth import Authenticator
from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import ClockState, Namespace, SandboxClock
from vpp_sandbox.mock_server.encoding import Stored, stored
from vpp_sandbox.mock_server.lifecycle import format_time, parse_records
from vpp_sandbox.mock_server.participations import Participations
from vpp_sandbox.mock_server.request import Facts
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.store import PageQuery, Store

__all__ = ["AppState", "Handlers", "namespace_of", "new_participation_id"]

# A body is a dict, or stored JSON passed through as it is (reads).
Body = dict[str, Any] | Stored
Result = tuple[Body, int] | tuple[Body, int, dict[str, str]]


def new_participation_id() -> str:
    return "vpp_" + secrets.token_hex(12)


def namespace_of(facts: Facts) -> Namespace:
    """The namespace of a request its security function let in with a bearer token."""
    namespace = facts.caller.namespace
    if namespace is None:  # pragma: no cover - the operation's security would have refused
        raise RuntimeError("a bearer-protected handler ran without a verified token")
    return namespace


@dataclass
class AppState:
    """Everything the handlers use, built once per app and injected (no module globals)."""

    settings: Settings
    store: Store
    clock: SandboxClock
    catalog: Catalog
    authenticator: Authenticator
    accounts: Accounts
    admission: Admission
    new_id: Callable[[], str] = field(default=new_participation_id)
    participations: Participations = field(init=False)

    def __post_init__(self) -> None:
        self.participations = Participations(
            self.store,
            self.catalog,
            limit=self.settings.max_participations,
            new_id=lambda: self.new_id(),  # a test may swap new_id
        )

    async def catch_up(self, namespace: Namespace, facts: Facts | None = None) -> datetime:
        """The namespace's `now`, with every autopilot move due by then applied (the one
        catch-up of the sandbox; `autopilot.catch_up` does the moving).

        A request reads its namespace's clock once (`pipeline.Identify`, into `facts`), so
        everything it does happens at that instant; without facts (the clock just moved) the
        clock and the earliest due step are read now, in one store read.
        """
        if facts is not None and facts.now is not None and facts.clock is not None:
            clock, earliest, now = facts.clock, facts.earliest_due, facts.now
        else:
            read = await self.store.namespace_state(namespace)
            clock, earliest = read.clock or ClockState(), read.earliest_due
            now = clock.now(self.clock.real())
        on = clock.autopilot and self.settings.autopilot
        if on and earliest is not None and earliest <= format_time(now):
            await autopilot.catch_up(self.store, namespace, now, due=True)
        return now


def current(facts: Facts, now: datetime) -> bool:
    """Whether what was read with the clock is still what the store holds: no autopilot move
    was due by `now` (the catch-up made none)."""
    return facts.earliest_due is None or facts.earliest_due > format_time(now)


class Handlers:
    """One method per operationId of the contract (snake_case), bound to the app's state."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def create_bearer_token(self, facts: Facts) -> Result:
        account = facts.caller.account
        assert account is not None  # the basicAuth security function found it
        return self.state.authenticator.issue(account), 200

    async def create_vpp_participation(self, facts: Facts, body: dict[str, Any]) -> Result:
        ns = namespace_of(facts)
        now = await self.state.catch_up(ns, facts)
        participation_id, document = await self.state.participations.create(ns, now, body)
        return stored(document), 201, {"Location": f"/vpp-participations/{participation_id}"}

    async def list_vpp_participations(
        self,
        facts: Facts,
        limit: int = 30,
        starting_after: str | None = None,
        ending_before: str | None = None,
        device_id: str | None = None,
    ) -> Result:
        ns = namespace_of(facts)
        now = await self.state.catch_up(ns, facts)
        query = PageQuery(limit, starting_after, ending_before, device_id)
        if facts.prefetched_page is not None and facts.page_query == query and current(facts, now):
            items, has_more = facts.prefetched_page  # read with the clock: one round trip
        else:
            items, has_more = await self.state.participations.list_json(
                ns,
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
                device_id=device_id,
            )
        body = {
            "object": "list",
            "url": "/vpp-participations",
            "has_more": has_more,
            "data": [stored(item) for item in items],
        }
        return body, 200

    async def retrieve_vpp_participation(self, facts: Facts, participation_id: str) -> Result:
        ns = namespace_of(facts)
        now = await self.state.catch_up(ns, facts)
        if (
            facts.prefetched is not None
            and facts.prefetched_id == participation_id
            and current(facts, now)
        ):
            return stored(facts.prefetched), 200  # read with the clock: one round trip
        return stored(await self.state.participations.get_json(ns, participation_id)), 200

    async def update_vpp_participation(
        self, facts: Facts, participation_id: str, body: dict[str, Any]
    ) -> Result:
        ns = namespace_of(facts)
        records = parse_records(body["participation_state"])
        now = await self.state.catch_up(ns, facts)
        document = await self.state.participations.update(ns, participation_id, records, now)
        return stored(document), 200

"""HTTP handlers: thin adapters from Connexion's arguments to the store and the lifecycle."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vpp_sandbox.mock_server import autopilot
from vpp_sandbox.mock_server.accounts import Accounts
from vpp_sandbox.mock_server.auth import Authenticator
from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import Clock, ClockState, Namespace, SandboxClock
from vpp_sandbox.mock_server.encoding import Stored, stored
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.lifecycle import (
    apply_update,
    format_time,
    new_participation,
    parse_records,
)
from vpp_sandbox.mock_server.scenarios import scenario_for_device
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.store import Store

__all__ = ["AppState", "Handlers", "new_participation_id"]

# A body is a dict, or stored JSON passed through as it is (reads).
Body = dict[str, Any] | Stored
Result = tuple[Body, int] | tuple[Body, int, dict[str, str]]


def new_participation_id() -> str:
    return "vpp_" + secrets.token_hex(12)


@dataclass
class AppState:
    """Everything the handlers use, built once per app and injected (no module globals)."""

    settings: Settings
    store: Store
    clock: Clock
    catalog: Catalog
    authenticator: Authenticator
    accounts: Accounts
    new_id: Callable[[], str] = field(default=new_participation_id)


    async def catch_up(self, namespace: Namespace) -> datetime:
        """The namespace's `now`, with every autopilot move due by then applied (read or write).

        One clock reading per request: everything the request does happens at that instant,
        so two requests at one instant see the same state.
        """
        clock = self.clock
        if not isinstance(clock, SandboxClock):  # a test's own clock
            now = await clock.now(namespace)
            if self.settings.autopilot:
                await autopilot.catch_up(self.store, namespace, now)
            return now
        # The clock and the earliest due step in one read: one round trip a request.
        stored, earliest = await self.store.namespace_state(namespace)
        state = stored or ClockState()
        now = state.now(clock.real())
        on = state.autopilot and self.settings.autopilot
        if on and earliest is not None and earliest <= format_time(now):
            await autopilot.catch_up(self.store, namespace, now, due=True)
        return now


def _namespace(token_info: dict[str, Any]) -> Namespace:
    return Namespace(str(token_info["account_id"]), bool(token_info["live_mode"]))


class Handlers:
    """One method per operationId (snake_case), bound to the app's state."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def create_bearer_token(self, token_info: dict[str, Any]) -> Result:
        return self.state.authenticator.issue(token_info["account"]), 200

    async def create_vpp_participation(
        self, body: dict[str, Any], token_info: dict[str, Any]
    ) -> Result:
        ns = _namespace(token_info)
        now = await self.state.catch_up(ns)
        known = await self.state.catalog.resolve(
            body["provider_id"], body["programme_id"], body["device_id"]
        )
        participation = new_participation(
            id=self.state.new_id(),
            account_id=ns.account_id,
            live_mode=ns.live_mode,
            device_id=body["device_id"],
            location_id=known.location_id,
            reference_id=body.get("reference_id"),
            provider=known.provider,
            programme=known.programme,
            now=now,
            scenario=scenario_for_device(body["device_id"]),
        )
        document = await self.state.store.insert(
            participation, limit=self.state.settings.max_participations
        )
        location = f"/vpp-participations/{participation.id}"
        return stored(document), 201, {"Location": location}

    async def list_vpp_participations(
        self,
        token_info: dict[str, Any],
        limit: int = 30,
        starting_after: str | None = None,
        ending_before: str | None = None,
        device_id: str | None = None,
    ) -> Result:
        if starting_after is not None and ending_before is not None:
            raise ApiError(
                "invalid_parameter",
                "Send starting_after (next page) or ending_before (previous page), not both.",
            )
        ns = _namespace(token_info)
        await self.state.catch_up(ns)
        items, has_more = await self.state.store.list_json(
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

    async def retrieve_vpp_participation(
        self, participation_id: str, token_info: dict[str, Any]
    ) -> Result:
        ns = _namespace(token_info)
        await self.state.catch_up(ns)
        return stored(await self.state.store.get_json(ns, participation_id)), 200

    async def update_vpp_participation(
        self, participation_id: str, body: dict[str, Any], token_info: dict[str, Any]
    ) -> Result:
        ns = _namespace(token_info)
        records = parse_records(body["participation_state"])
        now = await self.state.catch_up(ns)
        document = await self.state.store.update(
            ns, participation_id, lambda current: apply_update(current, records, now)
        )
        return stored(document), 200

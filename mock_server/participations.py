"""The service between the handlers and the store: what a participation request does, and
what its refusals say.

The store persists and raises codes with the facts (`StoreError`); the decisions around it
(the namespace's cap) and every message a client reads about participations are here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.lifecycle import Record, apply_update, new_participation
from vpp_sandbox.mock_server.scenarios import scenario_for_device
from vpp_sandbox.mock_server.store import (
    AccountGone,
    DuplicateParticipation,
    NamespaceFull,
    ParticipationNotFound,
    Store,
    StoreError,
    UnknownCursor,
)

__all__ = ["Participations", "refusal"]


def refusal(error: StoreError, *, limit: int | None = None) -> ApiError:
    """What a store's refusal means to the client, as a catalogue error."""
    if isinstance(error, ParticipationNotFound):
        mode = "live" if error.namespace.live_mode else "test"
        return ApiError(
            error.code,
            f"No VPP participation {error.participation_id} in this account's {mode} mode. "
            "Check the id, and that the token's mode matches the one the participation was "
            "created in.",
        )
    if isinstance(error, DuplicateParticipation):
        existing = error.existing
        return ApiError(
            error.code,
            f"Device {existing.device_id} already takes part in programme "
            f"{existing.programme.id} with {existing.id} ({existing.current_state.value}). "
            f"Update or retrieve {existing.id}; a new participation can be created once it is "
            "INELIGIBLE, OFFBOARDED or FAILED.",
        )
    if isinstance(error, NamespaceFull):
        return ApiError(
            error.code,
            f"This account's mode already holds its maximum of {limit or error.held} "
            "participations (--max-participations, VPP_MAX_PARTICIPATIONS). Empty it with "
            "POST /_sandbox/reset, use a throwaway account (POST /_sandbox/accounts), or restart "
            "the sandbox with a higher limit.",
        )
    if isinstance(error, AccountGone):
        return ApiError(
            error.code,
            f"Account {error.account_id} was deleted (DELETE /_sandbox/accounts/"
            f"{error.account_id}) while this request ran; nothing was written, and its tokens no "
            "longer work. Make a new account (POST /_sandbox/accounts).",
        )
    if isinstance(error, UnknownCursor):
        return ApiError(
            error.code,
            f"{error.name}={error.participation_id} is not a participation of this account and "
            "mode. Use the id of the first (ending_before) or last (starting_after) item of a "
            "page you received.",
        )
    return ApiError("internal_error", f"The store refused the request ({error.code}).")


class Participations:
    """Create, change and read participations of a namespace, at the request's `now`."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        *,
        limit: int,
        new_id: Callable[[], str],
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.limit = limit
        self.new_id = new_id

    async def create(
        self, namespace: Namespace, now: datetime, body: Mapping[str, Any]
    ) -> tuple[str, str]:
        """A new participation from a create request's body: its id and stored JSON."""
        known = await self.catalog.resolve(
            namespace, body["provider_id"], body["programme_id"], body["device_id"]
        )
        participation = new_participation(
            id=self.new_id(),
            account_id=namespace.account_id,
            live_mode=namespace.live_mode,
            device_id=body["device_id"],
            location_id=known.location_id,
            reference_id=body.get("reference_id"),
            provider=known.provider,
            programme=known.programme,
            now=now,
            scenario=scenario_for_device(body["device_id"]),
        )
        limit = self.limit
        try:
            document = await self.store.insert(participation, admit=lambda held: held < limit)
        except StoreError as error:
            raise refusal(error, limit=limit) from None
        return participation.id, document

    async def update(
        self, namespace: Namespace, participation_id: str, records: Sequence[Record], now: datetime
    ) -> str:
        """The participation after the submitted records (the lifecycle decides); stored JSON."""
        try:
            return await self.store.update(
                namespace, participation_id, lambda current: apply_update(current, records, now)
            )
        except StoreError as error:
            raise refusal(error) from None

    async def get_json(self, namespace: Namespace, participation_id: str) -> str:
        try:
            return await self.store.get_json(namespace, participation_id)
        except StoreError as error:
            raise refusal(error) from None

    async def list_json(
        self,
        namespace: Namespace,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        device_id: str | None,
    ) -> tuple[list[str], bool]:
        if starting_after is not None and ending_before is not None:
            raise ApiError(
                "invalid_parameter",
                "Send starting_after (next page) or ending_before (previous page), not both.",
            )
        try:
            return await self.store.list_json(
                namespace,
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
                device_id=device_id,
            )
        except StoreError as error:
            raise refusal(error) from None

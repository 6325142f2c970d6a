"""The sandbox control API (`openapi/sandbox-control.yaml`): clock, autopilot, reset, worlds,
accounts on demand, fault rules and the request journal.

Thin adapters like `handlers.py`; every call touches only the token's namespace.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

from vpp_sandbox.mock_server.accounts import Caller
from vpp_sandbox.mock_server.clock import ClockBackwards, Namespace, SandboxClock
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.faults import RULE_OPERATIONS, RULE_STATUSES
from vpp_sandbox.mock_server.handlers import AppState, Result, namespace_of
from vpp_sandbox.mock_server.har import har_log
from vpp_sandbox.mock_server.journal import Journal
from vpp_sandbox.mock_server.lifecycle import format_time, parse_time
from vpp_sandbox.mock_server.participations import refusal
from vpp_sandbox.mock_server.request import Facts
from vpp_sandbox.mock_server.store import FaultRule, StoreError
from vpp_sandbox.mock_server.worlds import BuildFailed, load_into

__all__ = [
    "LATEST_CLOCK",
    "MAX_ADVANCE",
    "Control",
    "clock_target",
    "finish_deletions",
    "parse_duration",
]

_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_UNIT_SECONDS = (604_800, 86_400, 3_600, 60, 1)
# The bounds of openapi/sandbox-control.yaml (SandboxClockUpdate): an advance of at most 100
# years of 365 days, and a clock that never passes the end of the year 8999, so that every time
# derived from it (steps scheduled weeks ahead, a world shifted to it) stays far inside what
# a datetime can hold; past year 9999 every later request of the namespace would fail.
MAX_ADVANCE = timedelta(seconds=3_153_600_000)
LATEST_CLOCK = datetime(8999, 12, 31, 23, 59, 59, tzinfo=UTC)
_LOAD_SIZE = 1000  # the `load` world through the API, unless `size` says otherwise
MAX_FAULT_RULES = 20  # per namespace: a shared sandbox keeps few rows for anyone


def parse_duration(value: str | int) -> timedelta:
    """`P7D`, `P1W`, `PT36H`, `P1DT2H30M` (weeks to seconds) or whole seconds, to a timedelta."""
    if isinstance(value, int):
        return timedelta(seconds=value)
    match = _DURATION.match(value)
    if match is None or value in ("P", "PT") or value.endswith("T"):
        raise ApiError(
            "invalid_request_body",
            f"advance {value!r} is not a duration: send an ISO 8601 duration in weeks, days, "
            "hours, minutes and seconds (P7D, P1W, PT36H, P1DT2H30M) or a number of seconds.",
        )
    # The schema keeps the text short (maxLength), so each number is a few digits at most.
    total = sum(int(g or 0) * unit for g, unit in zip(match.groups(), _UNIT_SECONDS, strict=True))
    if total > MAX_ADVANCE.total_seconds():
        raise ApiError(
            "invalid_request_body",
            f"advance {value!r} is {total} seconds, more than the 100 years (3153600000 "
            "seconds) the clock moves at once: advance by less, in several steps if needed.",
        )
    return timedelta(seconds=total)


def clock_target(now: datetime, body: dict[str, Any]) -> datetime | None:
    """Where `advance` or `set` would take a clock that reads `now` (None: neither is sent),
    or a 400 naming the bound when the sandbox could not represent it."""
    if "advance" in body:
        target = now + parse_duration(body["advance"])
    elif "set" in body:
        try:
            target = parse_time(body["set"])
        except OverflowError:  # an offset that takes the instant past year 9999
            raise _beyond("an instant after the year 9999") from None
    else:
        return None
    if target > LATEST_CLOCK:
        raise _beyond(format_time(target))
    return target


def _beyond(shown: str) -> ApiError:
    return ApiError(
        "invalid_request_body",
        f"That would move the clock to {shown}, past {format_time(LATEST_CLOCK)}, the latest "
        "instant a sandbox clock can show. Send an earlier instant or a shorter advance (POST "
        "/_sandbox/reset takes the clock back to real time).",
    )


class Control:
    """One method per operationId of the control API (snake_case), bound to the app's state."""

    def __init__(self, state: AppState, journal: Journal | None = None) -> None:
        self.state = state
        self.journal = journal if journal is not None else Journal(0)

    @property
    def clock(self) -> SandboxClock:
        return self.state.clock

    async def _clock_json(self, ns: Namespace) -> dict[str, Any]:
        state = await self.clock.state(ns)
        return {
            "object": "sandbox_clock",
            "account_id": ns.account_id,
            "live_mode": ns.live_mode,
            "now": format_time(state.now(self.clock.real())),
            "frozen": state.frozen_at is not None,
            "autopilot": self.state.settings.autopilot and state.autopilot,
        }

    async def retrieve_sandbox_clock(self, facts: Facts) -> Result:
        ns = namespace_of(facts)
        return await self._clock_json(ns), 200

    async def update_sandbox_clock(self, facts: Facts, body: dict[str, Any]) -> Result:
        ns = namespace_of(facts)
        if "advance" in body and "set" in body:
            raise ApiError(
                "invalid_request_body",
                "Send advance (a duration) or set (an instant), not both.",
            )
        if body.get("autopilot") is True and not self.state.settings.autopilot:
            raise ApiError(
                "autopilot_unavailable",
                "The server runs with --no-autopilot (VPP_AUTOPILOT=0), so the autopilot cannot "
                "be switched on for a namespace. Restart the server without it.",
            )
        clock = self.clock
        now = facts.now if facts.now is not None else await clock.now(ns)
        target = clock_target(now, body)  # checked before anything changes
        # A move may fall due for every participation of the namespace: heavy work.
        async with self.state.admission.namespace(ns, "clock move"):
            try:
                if target is not None and "advance" in body:
                    await clock.advance(ns, target - now)
                elif target is not None:
                    await clock.set(ns, target)
            except ClockBackwards as exc:
                raise ApiError("clock_cannot_go_back", exc.message) from None
            # Steps that fell due while the clock moved happen now, each at its scheduled time.
            await self.state.catch_up(ns)
            if "freeze" in body:
                await clock.freeze(ns, bool(body["freeze"]))
            if "autopilot" in body:
                await clock.set_autopilot(ns, bool(body["autopilot"]))
                await self.state.catch_up(ns)
        return await self._clock_json(ns), 200

    async def reset_sandbox(self, facts: Facts) -> Result:
        ns = namespace_of(facts)
        async with self.state.admission.namespace(ns, "reset"):
            deleted = await self.state.store.delete_namespace(ns)
            await self.clock.reset(ns)
            await self.state.store.delete_faults(ns)
        if deleted:  # the log of the lease's release too: a reset leaves the WAL empty
            await self.state.store.compact()
        clock = await self._clock_json(ns)
        return {"object": "sandbox_reset", "deleted": deleted, "clock": clock}, 200

    async def load_sandbox_world(self, facts: Facts, body: dict[str, Any]) -> Result:
        ns = namespace_of(facts)
        name, seed = body["world"], int(body.get("seed", 0))
        size = body.get("size")
        if name == "load" and size is None:
            size = _LOAD_SIZE
        limit = self.state.settings.max_participations
        if size is not None and size > limit:
            raise ApiError(
                "invalid_request_body",
                f"size {size} is more than the {limit} participations one account's mode may "
                f"hold on this sandbox (--max-participations). Ask for a size of {limit} or "
                "less.",
            )
        admission = self.state.admission
        try:
            async with admission.namespace(ns, "world load"), admission.builder():
                loaded = await load_into(
                    self.state.store, self.clock, self.state.catalog, ns, name, seed, size,
                    admit=lambda held: held < limit,
                )
        except ValueError as exc:
            raise ApiError("invalid_request_body", str(exc)) from None
        except StoreError as error:  # the namespace filled up, or the account was deleted
            raise refusal(error, limit=limit) from None
        except BuildFailed as exc:
            raise ApiError(
                "server_busy",
                f"The world could not be built ({exc}); nothing of it was loaded. Retry in a "
                "few seconds, or ask for a smaller size.",
                {"Retry-After": "5"},
            ) from None
        answer = {
            "object": "sandbox_world",
            "world": name,
            "seed": seed,
            "deleted": loaded.deleted,
            "loaded": loaded.loaded,
            "skipped_other_mode": loaded.skipped_other_mode,
            "clock": await self._clock_json(ns),
        }
        return answer, 200

    async def create_sandbox_account(self, facts: Facts) -> Result:
        self.state.authenticator.admin_caller(facts.caller)  # the scheme is optional in the spec
        made = await self.state.accounts.create(_caller(facts), self.state.clock.real())
        answer = {
            "object": "sandbox_account",
            "account_id": made.account_id,
            "test_key": made.test_key,
            "live_key": made.live_key,
            "time_created": made.time_created,
        }
        return answer, 201

    async def delete_sandbox_account(self, facts: Facts, account_id: str) -> Result:
        caller, accounts = _caller(facts), self.state.accounts
        accounts.may_delete(caller, account_id)
        real = self.state.clock.real()
        async with self.state.admission.account(account_id):
            deleted = await accounts.delete(caller, account_id, real)
        # Records of deletions finished a day ago: no request of theirs can still be running.
        await self.state.store.forget_deletions(format_time(real - timedelta(days=1)))
        self.journal.forget(account_id)  # this process's; the others' age out
        answer = {
            "object": "sandbox_account",
            "account_id": account_id,
            "deleted": True,
            "deleted_participations": {
                "test": deleted.test_participations,
                "live": deleted.live_participations,
            },
            "deleted_clocks": deleted.clocks,
        }
        return answer, 200

    async def create_sandbox_fault(self, facts: Facts, body: dict[str, Any]) -> Result:
        ns = namespace_of(facts)
        rule = _fault_rule(body, format_time(self.state.clock.real()))
        if not await self.state.store.add_fault(ns, rule, admit=lambda n: n < MAX_FAULT_RULES):
            raise ApiError(
                "invalid_request_body",
                f"This account and mode already has {MAX_FAULT_RULES} fault rules waiting to "
                "fire, the most it may keep. Delete them (DELETE /_sandbox/faults) or let them "
                "fire first.",
            )
        return _fault_json(rule), 201

    async def list_sandbox_faults(self, facts: Facts) -> Result:
        rules = await self.state.store.faults(namespace_of(facts))
        return {"object": "list", "data": [_fault_json(r) for r in rules], "has_more": False}, 200

    async def delete_sandbox_faults(self, facts: Facts) -> Result:
        deleted = await self.state.store.delete_faults(namespace_of(facts))
        return {"object": "sandbox_faults_deleted", "deleted": deleted}, 200

    async def list_sandbox_requests(
        self, facts: Facts, limit: int = 30, format_: str = "json"
    ) -> Result:
        entries, more = self.journal.recent(namespace_of(facts), limit)
        if format_ == "har":
            settings = self.state.settings  # where the server listens: HAR viewers want URLs
            base = f"http://{settings.host}:{settings.port}"
            return har_log(reversed(entries), base, _version()), 200
        answer = {
            "object": "list",
            "data": [e.to_json() for e in entries],
            "has_more": more,
            "capacity": self.journal.size,
        }
        return answer, 200


async def finish_deletions(state: AppState) -> int:
    """Finish the account deletions a crash interrupted (run once a server has started); one
    that another process is finishing is left to it. Returns how many were finished."""
    finished = 0
    for account_id in await state.store.unfinished_deletions():
        try:
            async with state.admission.account(account_id):
                done = await state.store.delete_account(account_id, format_time(state.clock.real()))
        except ApiError:  # another process holds the deletion
            continue
        finished += done is not None
    return finished


def _caller(facts: Facts) -> Caller:
    """Who asks for an account to be made or deleted: the admin key, an account's bearer
    token, or (on a sandbox without an admin key) anyone (the adminKey scheme let them in)."""
    if facts.caller.admin:
        return Caller(admin=True)
    namespace = facts.caller.namespace
    return Caller() if namespace is None else Caller(account_id=namespace.account_id)


def _version() -> str:
    try:
        return metadata.version("vpp-sandbox")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare source tree
        return "0"


def _fault_rule(body: dict[str, Any], now: str) -> FaultRule:
    """A rule from its JSON (the schema checked types and ranges), or what to fix."""
    operation = str(body["operation"])
    if operation != "*" and operation not in RULE_OPERATIONS:
        raise ApiError(
            "invalid_request_body",
            f"operation {operation!r} is not a VPP operation a fault rule can name: use one of "
            f"{', '.join(sorted(RULE_OPERATIONS))}, or * for any of them.",
        )
    status, latency, drop = body.get("status"), body.get("latency_ms"), body.get("drop", False)
    if [status is not None, latency is not None, drop is True].count(True) != 1:
        raise ApiError(
            "invalid_request_body",
            "A fault rule does one thing: give exactly one of status (429, 500 or 503), "
            "latency_ms, or drop: true.",
        )
    retry_after = body.get("retry_after")
    if retry_after is not None and status not in (429, 503):
        raise ApiError(
            "invalid_request_body",
            "retry_after goes with status 429 or 503 (the answers that carry Retry-After).",
        )
    if status is not None and status not in RULE_STATUSES:
        raise ApiError(
            "invalid_request_body",
            f"status {status} cannot be forced: use 429, 500 or 503.",
        )
    times = int(body.get("times", 1))
    return FaultRule(
        "flt_" + secrets.token_hex(12), operation, status, retry_after, latency, bool(drop),
        times, times, now,
    )  # fmt: skip


def _fault_json(rule: FaultRule) -> dict[str, Any]:
    return {
        "object": "sandbox_fault",
        "id": rule.id,
        "operation": rule.operation,
        "status": rule.status,
        "retry_after": rule.retry_after,
        "latency_ms": rule.latency_ms,
        "drop": rule.drop,
        "times": rule.times,
        "remaining": rule.remaining,
        "time_created": rule.time_created,
    }

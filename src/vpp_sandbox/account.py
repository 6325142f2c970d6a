"""One sandbox account as a test uses it: credentials, logged-in clients and the control API.

Every helper acts on the namespace of the account's mode (test, or live with `live_mode`) and
returns the sandbox's answer; a refused call raises `SandboxCallError` with the error object.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests

from vpp_sandbox.client import TIMEOUT, SandboxSession, checked

__all__ = ["SCENARIO_KINDS", "SandboxAccount", "SandboxRequest"]

# The scenario devices of the README, by scenario (mock_server/scenarios.py holds the same ids;
# tests/test_pytest_plugin.py keeps the two equal, so the plugin never imports the server).
SCENARIO_KINDS: dict[str, str] = {
    "happy": "dev_5ce0a7100000000000000001",
    "ineligible": "dev_5ce0a7100000000000000002",
    "telemetry_never_arrives": "dev_5ce0a7100000000000000003",
    "telemetry_lost": "dev_5ce0a7100000000000000004",
    "slow_registration": "dev_5ce0a7100000000000000005",
}
# Any well-formed ids are accepted; these give the enrolments of `enrol_scenario` stable names.
DEFAULT_PROVIDER_ID = "prv_8587fa49c7e5297ccc6c57e5"
DEFAULT_PROGRAMME_ID = "vpr_6a1f8e375db9de605baadd46"
JOURNAL_LIMIT = 100  # the most `GET /_sandbox/requests` gives in one answer


@dataclass(frozen=True)
class SandboxRequest:
    """One request of the journal (`GET /_sandbox/requests`), as the sandbox answered it."""

    id: str
    time: str
    method: str
    path: str
    query: str
    status: int
    latency_ms: float
    error_code: str | None
    error_message: str | None

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> SandboxRequest:
        error = item.get("error") or {}
        return cls(
            id=item["id"],
            time=item["time"],
            method=item["method"],
            path=item["path"],
            query=item.get("query", ""),
            status=int(item["status"]),
            latency_ms=float(item.get("latency_ms", 0.0)),
            error_code=error.get("code"),
            error_message=error.get("message"),
        )

    def line(self) -> str:
        """`POST /vpp-participations -> 429 rate_limited: Rate limit forced …`."""
        target = self.path + (f"?{self.query}" if self.query else "")
        text = f"{self.time} {self.method} {target} -> {self.status}"
        if self.error_code is not None:
            text += f" {self.error_code}: {self.error_message}"
        return text


@dataclass
class SandboxAccount:
    """A fresh account for one test: credentials, a logged-in client and sandbox helpers.

    `client` is a `SandboxSession` (a `requests.Session` that takes paths and raises
    `SandboxCallError` on an error answer) with a bearer token of the account's test mode (live
    mode with `vpp_live_mode`): `vpp_account.client.get("/vpp-participations")`.
    """

    base_url: str
    account_id: str
    test_key: str
    live_key: str
    live_mode: bool = False
    raise_on_error: bool = True
    # The namespace time of the latest world load through `load_world`, per mode: the
    # integration coverage counts what happened after it, not the world's own history.
    world_loaded_at: dict[bool, str] = field(default_factory=dict, repr=False)
    _sessions: list[SandboxSession] = field(default_factory=list, repr=False)
    _client: SandboxSession | None = field(default=None, repr=False)
    _tokens: dict[bool, str] = field(default_factory=dict, repr=False)
    _control: dict[bool, SandboxSession] = field(default_factory=dict, repr=False)

    @property
    def api_key(self) -> str:
        """The key of the client's mode."""
        return self.live_key if self.live_mode else self.test_key

    @property
    def client(self) -> SandboxSession:
        """The logged-in HTTP client of the account's mode (made on first use)."""
        if self._client is None:
            # The mode's kept token: the plugin's own reads add no login to the journal.
            token = self.token(self.live_mode)
            self._client = SandboxSession(self.base_url, token, raise_on_error=self.raise_on_error)
            self._sessions.append(self._client)
        return self._client

    def login(self, live: bool = False) -> str:
        """A new bearer token of the test (or live) mode, from `GET /login` with its key."""
        key = self.live_key if live else self.test_key
        r = requests.get(self.base_url + "/login", auth=(self.account_id, key), timeout=TIMEOUT)
        token: str = checked("GET", "/login", r)["bearer_token"]
        return token

    def token(self, live: bool | None = None) -> str:
        """A bearer token of the mode (the client's by default), made once and kept."""
        mode = self.live_mode if live is None else live
        if mode not in self._tokens:
            self._tokens[mode] = self.login(mode)
        return self._tokens[mode]

    def session(self, live: bool = False, *, raise_on_error: bool = True) -> SandboxSession:
        """Another logged-in client, of either mode; closed when the test ends."""
        made = SandboxSession(self.base_url, self.login(live), raise_on_error=raise_on_error)
        self._sessions.append(made)
        return made

    def async_client(self, live: bool | None = None, *, raise_on_error: bool = True) -> Any:
        """An `httpx.AsyncClient` of the mode (the client's by default), logged in and as loud
        as `client`; use it as `async with vpp_account.async_client() as client: ...`."""
        from vpp_sandbox.aclient import async_client

        return async_client(self.base_url, self.token(live), raise_on_error=raise_on_error)

    def control(self, live: bool | None = None) -> SandboxSession:
        """The helpers' own client of a mode: always loud, apart from the test's client."""
        mode = self.live_mode if live is None else live
        if mode not in self._control:
            made = SandboxSession(self.base_url, self.token(mode))
            self._sessions.append(made)
            self._control[mode] = made
        return self._control[mode]

    @property
    def used_modes(self) -> list[bool]:
        """The modes this account logged in to (whose namespaces a test may have touched)."""
        return sorted(set(self._tokens) | {self.live_mode})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.control().request(method, path, json=body).json()

    # -- sandbox time ---------------------------------------------------------------------

    def clock(self) -> dict[str, Any]:
        """The namespace's clock: `now`, `frozen`, `autopilot` (`GET /_sandbox/clock`)."""
        clock: dict[str, Any] = self._call("GET", "/_sandbox/clock")
        return clock

    def advance(self, duration: str | int | timedelta) -> dict[str, Any]:
        """Move the clock forward (`"P7D"`, `"PT36H"`, seconds or a timedelta); due steps happen."""
        if isinstance(duration, timedelta):
            duration = int(duration.total_seconds())
        return self._update_clock({"advance": duration})

    def set_clock(self, instant: datetime | str) -> dict[str, Any]:
        """Move the clock to an instant (a datetime with a time zone, or RFC 3339 text)."""
        if isinstance(instant, datetime):
            if instant.tzinfo is None:
                raise ValueError("set_clock needs an aware datetime (e.g. tzinfo=UTC)")
            instant = instant.isoformat().replace("+00:00", "Z")
        return self._update_clock({"set": instant})

    def freeze(self) -> dict[str, Any]:
        """Stop the clock at the current second."""
        return self._update_clock({"freeze": True})

    def unfreeze(self) -> dict[str, Any]:
        """Let the clock run on from where it stands."""
        return self._update_clock({"freeze": False})

    def set_autopilot(self, on: bool) -> dict[str, Any]:
        """Switch the autopilot (participations moving on their own) off or on again."""
        return self._update_clock({"autopilot": on})

    def _update_clock(self, body: dict[str, Any]) -> dict[str, Any]:
        clock: dict[str, Any] = self._call("POST", "/_sandbox/clock", body)
        return clock

    # -- data -----------------------------------------------------------------------------

    def reset(self) -> dict[str, Any]:
        """Delete the namespace's participations and put its clock back to real time."""
        answer: dict[str, Any] = self._call("POST", "/_sandbox/reset")
        self.world_loaded_at.pop(self.live_mode, None)
        return answer

    def load_world(
        self, name: str = "demo", seed: int = 0, size: int | None = None
    ) -> dict[str, Any]:
        """Replace the namespace's participations with a seeded world's (`POST /_sandbox/world`)."""
        body: dict[str, Any] = {"world": name, "seed": seed}
        if size is not None:
            body["size"] = size
        loaded: dict[str, Any] = self._call("POST", "/_sandbox/world", body)
        self.world_loaded_at[self.live_mode] = loaded["clock"]["now"]
        return loaded

    def enrol_scenario(
        self,
        kind: str,
        *,
        provider_id: str = DEFAULT_PROVIDER_ID,
        programme_id: str = DEFAULT_PROGRAMME_ID,
    ) -> dict[str, Any]:
        """Enrol the scenario device of `kind` (see `SCENARIO_KINDS`); the new participation."""
        if kind not in SCENARIO_KINDS:
            raise ValueError(f"unknown scenario {kind!r}: one of {', '.join(SCENARIO_KINDS)}")
        body = {
            "device_id": SCENARIO_KINDS[kind],
            "provider_id": provider_id,
            "programme_id": programme_id,
        }
        created: dict[str, Any] = self._call("POST", "/vpp-participations", body)
        return created

    def participations(
        self, *, device_id: str | None = None, page_size: int = 100, live: bool | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every participation of the namespace, newest first, page after page."""
        params: dict[str, Any] = {"limit": page_size}
        if device_id is not None:
            params["device_id"] = device_id
        client = self.control(live)
        while True:
            page = client.get("/vpp-participations", params=params).json()
            yield from page["data"]
            if not page["has_more"] or not page["data"]:
                return
            params["starting_after"] = page["data"][-1]["id"]

    # -- what the sandbox saw ---------------------------------------------------------------

    def requests(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        status: int | None = None,
        live: bool | None = None,
        limit: int = JOURNAL_LIMIT,
    ) -> list[SandboxRequest]:
        """The namespace's recent requests, oldest first, from the sandbox's journal.

        `path` may be a glob (`/vpp-participations/*`); e.g. "my client sent exactly one
        create": `len(vpp_account.requests("POST", "/vpp-participations")) == 1`.
        """
        answer = self.control(live).get("/_sandbox/requests", params={"limit": limit}).json()
        found = [SandboxRequest.from_json(item) for item in reversed(answer["data"])]
        return [
            r
            for r in found
            if (method is None or r.method == method.upper())
            and (path is None or fnmatch.fnmatchcase(r.path, path))
            and (status is None or r.status == status)
        ]

    # -- faults (the control API's per-namespace rules) --------------------------------------

    def fail_next(
        self,
        operation: str,
        status: int = 429,
        *,
        times: int = 1,
        retry_after: int | None = None,
    ) -> dict[str, Any]:
        """The next `times` calls of `operation` (an operationId, or "*") answer `status`:
        429 (`rate_limited`, with `Retry-After`), 500 (`internal_error`) or 503 (`server_busy`)."""
        rule: dict[str, Any] = {"operation": operation, "status": status, "times": times}
        if retry_after is not None:
            rule["retry_after"] = retry_after
        return self.add_fault(rule)

    def slow_down(
        self, operation: str, latency: float | timedelta, *, times: int = 1
    ) -> dict[str, Any]:
        """The next `times` calls of `operation` answer after `latency` seconds more."""
        seconds = latency.total_seconds() if isinstance(latency, timedelta) else latency
        return self.add_fault(
            {"operation": operation, "latency_ms": round(seconds * 1000), "times": times}
        )

    def drop_next(self, operation: str, *, times: int = 1) -> dict[str, Any]:
        """The next `times` calls of `operation` get their connection closed, with no answer."""
        return self.add_fault({"operation": operation, "drop": True, "times": times})

    def add_fault(self, rule: dict[str, Any]) -> dict[str, Any]:
        """A fault rule as the control API takes it (`POST /_sandbox/faults`)."""
        made: dict[str, Any] = self._call("POST", "/_sandbox/faults", rule)
        return made

    def faults(self) -> list[dict[str, Any]]:
        """The namespace's fault rules still to fire (`GET /_sandbox/faults`)."""
        rules: list[dict[str, Any]] = self._call("GET", "/_sandbox/faults")["data"]
        return rules

    def clear_faults(self) -> dict[str, Any]:
        """Delete the namespace's fault rules (`DELETE /_sandbox/faults`)."""
        cleared: dict[str, Any] = self._call("DELETE", "/_sandbox/faults")
        return cleared

    def close(self) -> None:
        for made in self._sessions:
            made.close()
        self._sessions.clear()
        self._control.clear()
        self._client = None

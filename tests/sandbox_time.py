"""Helpers for the sandbox-time tests: an in-process app on a hand-moved 'real' clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.sandbox_client import ACCOUNT_A, ACCOUNTS, Sandbox
from vpp_sandbox.mock_server.app import create_app
from vpp_sandbox.mock_server.clock import SandboxClock
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.stores import open_store

START = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)


class RealTime:
    """Stands in for the wall clock: moves only when a test says so."""

    def __init__(self, at: datetime = START) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def pass_(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@dataclass
class TimedSandbox:
    sb: Sandbox
    real: RealTime

    def clock(self, account_id: str = ACCOUNT_A, live: bool = False, **body: Any) -> Any:
        headers = self.sb.headers(account_id, live)
        if body:
            return self.sb.client.post("/_sandbox/clock", json=body, headers=headers)
        return self.sb.client.get("/_sandbox/clock", headers=headers)

    def control(
        self, path: str, account_id: str = ACCOUNT_A, live: bool = False, **body: Any
    ) -> Any:
        return self.sb.client.post(
            f"/_sandbox/{path}", json=body or None, headers=self.sb.headers(account_id, live)
        )

    def advance(self, duration: str | int, account_id: str = ACCOUNT_A, live: bool = False) -> Any:
        r = self.clock(account_id, live, advance=duration)
        assert r.status_code == 200, r.text
        return r.json()


def timed_sandbox(
    db: str = ":memory:", real: RealTime | None = None, **settings: Any
) -> TimedSandbox:
    real = real or RealTime()
    s = Settings(db=db, accounts=ACCOUNTS, **settings)
    store = open_store(db)
    app = create_app(s, store, clock=SandboxClock(store, real))
    return TimedSandbox(Sandbox(s, store, app, app.test_client()), real)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def past(p: dict[str, Any]) -> list[tuple[str, str]]:
    """(state, occurred_at) of the COMPLETE and IN_PROGRESS entries."""
    return [(e["state"], e["occurred_at"]) for e in p["participation_state"] if "occurred_at" in e]

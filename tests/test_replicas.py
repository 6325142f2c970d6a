"""Several server processes on one store answer as one process would.

Three deployments, each of real processes: `serve --workers 2` on one SQLite file (the kernel
spreads connections over the workers as it likes; every request here opens a new connection),
two `serve` processes on one SQLite file, and two `serve` replicas on one PostgreSQL database
(with two processes, requests alternate between their ports, so both always take part).
"""

from __future__ import annotations

import functools
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.concurrently import together
from tests.serve_process import served
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

pytestmark = pytest.mark.slow
ACCOUNT = DEFAULT_ACCOUNT[0]
REASONS = ["AWAITING_TELEMETRY", "AWAITING_DISPATCH", "AWAITING_CONSENT", "OPERATOR_REQUEST",
           "CUSTOMER_REQUEST"]
REASON_SETS = [list(c) for n in (1, 2, 3) for c in itertools.combinations(REASONS, n)][:24]
JOIN = ["AWAITING_CUSTOMER_CONSENT", "AWAITING_DEVICE_TELEMETRY", "CHECKING_ELIGIBILITY",
        "AWAITING_REGISTRATION", "REGISTERED", "ACTIVE"]


ACCOUNTS = [f"acc_{i:024x}:sk_test_replica{i:020x}" for i in range(1, 5)]


@dataclass
class Deployment:
    """Base URLs of the processes; `url()` takes them in turn. One account per test."""

    name: str
    bases: list[str]
    account: str = DEFAULT_ACCOUNT[0].account_id + ":" + DEFAULT_ACCOUNT[0].api_key

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(range(len(self.bases)))
        self._lock = threading.Lock()
        self.token = self.login()

    def url(self, path: str) -> str:
        with self._lock:
            return self.bases[next(self._turn)] + path

    def login(self) -> str:
        account_id, _, key = self.account.partition(":")
        r = requests.get(self.url("/login"), auth=(account_id, key), timeout=10)
        assert r.status_code == 200, r.text
        return str(r.json()["bearer_token"])

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        # A new connection per request: with workers, each may land on another process.
        return requests.request(
            method, self.url(path), json=body, timeout=30,
            headers={"Authorization": f"Bearer {self.token}", "Connection": "close"},
        )


def _start(kind: str, stack: ExitStack, tmp: Path, pg: Callable[[], Any], *extra: str) -> list[str]:
    accounts = [arg for a in ACCOUNTS for arg in ("--account", a)]
    if kind.startswith("sqlite"):
        db = str(tmp / f"s{secrets.token_hex(3)}.db")
        if kind == "sqlite-2-workers":
            args = ("--db", db, "--workers", "2", *accounts, *extra)
            return [stack.enter_context(served(*args)).base_url]
        return [stack.enter_context(served("--db", db, *accounts, *extra)).base_url
                for _ in (1, 2)]
    url = pg().database()
    return [stack.enter_context(served("--db", url, *accounts, *extra)).base_url for _ in (1, 2)]


KINDS = ["sqlite-2-workers", "sqlite-2-processes", "postgres-2-replicas"]


@pytest.fixture(scope="module", params=KINDS)
def processes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[str]]]:
    """The deployment's processes, shared by the module's tests (each has its own account)."""
    with ExitStack() as stack:
        pg = lambda: request.getfixturevalue("postgres")  # noqa: E731 - started on demand
        yield request.param, _start(request.param, stack, tmp_path_factory.mktemp("r"), pg)


_next_account = itertools.count()


@pytest.fixture
def deployment(processes: tuple[str, list[str]]) -> Deployment:
    kind, bases = processes
    return Deployment(kind, bases, ACCOUNTS[next(_next_account) % len(ACCOUNTS)])


def _create(d: Deployment) -> dict[str, Any]:
    body = {"device_id": "dev_" + secrets.token_hex(12), "provider_id": "prv_" + "1" * 24,
            "programme_id": "vpr_" + secrets.token_hex(12)}
    r = d.call("POST", "/vpp-participations", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _states(p: dict[str, Any]) -> list[str]:
    return [e["state"] for e in p["participation_state"] if e["status"] != "PENDING"]


def test_concurrent_updates_through_every_process_are_all_kept(deployment: Deployment) -> None:
    d = deployment
    assert d.call("POST", "/_sandbox/clock", {"autopilot": False}).status_code == 200
    pid = _create(d)["id"]
    for state in JOIN:
        assert d.call("POST", f"/vpp-participations/{pid}",
                      {"participation_state": [{"state": state, "status": "IN_PROGRESS"}]}
                      ).status_code == 200
    sets = REASON_SETS[:16]
    answers = together([
        functools.partial(d.call, "POST", f"/vpp-participations/{pid}", {"participation_state": [
            {"state": "SUSPENDED", "status": "IN_PROGRESS", "suspension_reasons": rs}]})
        for rs in sets
    ])
    assert [a.status_code for a in answers] == [200] * len(sets), [a.text for a in answers]
    final = d.call("GET", f"/vpp-participations/{pid}").json()
    suspended = [sorted(e["suspension_reasons"]) for e in final["participation_state"]
                 if e["state"] == "SUSPENDED"]
    # Every acknowledged update is in the timeline, once, in a legal order.
    assert sorted(suspended) == sorted(sorted(rs) for rs in sets)
    assert _states(final) == ["ENROLMENT_REQUESTED", *JOIN, *["SUSPENDED"] * len(sets)]
    # Each answer was the timeline as it stood after its own update.
    lengths = sorted(len(a.json()["participation_state"]) for a in answers)
    assert lengths == sorted(set(lengths))


def test_a_due_step_is_applied_once_when_every_process_reads_at_one_instant(
    deployment: Deployment,
) -> None:
    d = deployment
    assert d.call("POST", "/_sandbox/clock", {"freeze": True}).status_code == 200
    pids = [_create(d)["id"] for _ in range(6)]
    assert d.call("POST", "/_sandbox/clock", {"advance": "P8D"}).status_code == 200
    pages = together([functools.partial(d.call, "GET", f"/vpp-participations/{pid}")
                       for pid in pids * 3])
    assert all(p.status_code == 200 for p in pages)
    for pid in pids:
        final = d.call("GET", f"/vpp-participations/{pid}").json()
        states = _states(final)
        assert states == ["ENROLMENT_REQUESTED", *JOIN], states
        times = [e["occurred_at"] for e in final["participation_state"] if "occurred_at" in e]
        assert times == sorted(times)


def test_a_clock_advance_is_seen_by_every_process_on_the_next_request(
    deployment: Deployment,
) -> None:
    d = deployment
    pid = _create(d)["id"]
    for _ in range(2 * len(d.bases) + 4):  # every process has read this namespace's clock
        assert d.call("GET", "/_sandbox/clock").status_code == 200
    moved = d.call("POST", "/_sandbox/clock", {"advance": "P7D"}).json()["now"]
    for _ in range(2 * len(d.bases) + 4):
        assert d.call("GET", "/_sandbox/clock").json()["now"] >= moved
        assert d.call("GET", f"/vpp-participations/{pid}").json()["current_state"] == "ACTIVE"


@pytest.mark.parametrize("kind", KINDS)
def test_the_rate_limit_holds_across_processes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with ExitStack() as stack:
        pg = lambda: request.getfixturevalue("postgres")  # noqa: E731
        d = Deployment(kind, _start(kind, stack, tmp_path, pg, "--rate-limit", "5"), ACCOUNTS[0])
        _rate_limited(d)


def _rate_limited(d: Deployment) -> None:
    started = time.monotonic()
    statuses = [d.call("GET", "/vpp-participations?limit=1").status_code for _ in range(30)]
    elapsed = time.monotonic() - started
    assert set(statuses) <= {200, 429}
    # A budget of 5 a second (bursts of 5), shared by the processes: at most 5 plus 5 for
    # every second the requests took; a bucket per process would let about twice that in.
    assert statuses.count(200) <= 5 + 5 * elapsed + 1, (statuses, elapsed)
    assert statuses.count(200) >= 5

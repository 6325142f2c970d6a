"""Data survives a restart on a SQLite file, and concurrent updates never lose a write.

Races between server processes are in `test_replicas.py` and `test_store_contract.py`; the
race here runs two connections from threads (two processes' view of one file), with a window
between read and write wide enough that only the store's locking keeps every update.
"""

from __future__ import annotations

import threading
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox_client import ACCOUNT_A, make_sandbox, step
from tests.stores import sync
from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.lifecycle import Reason, Record, State, Status, apply_update
from vpp_sandbox.mock_server.stores import open_store

JOIN = [
    "AWAITING_CUSTOMER_CONSENT",
    "AWAITING_DEVICE_TELEMETRY",
    "CHECKING_ELIGIBILITY",
    "AWAITING_REGISTRATION",
    "REGISTERED",
    "ACTIVE",
]
# 20 distinct non-empty sets of reasons: each is a real change from any other.
REASON_SETS = [list(c) for n in (1, 2) for c in combinations([r.value for r in Reason], n)][:20]


@pytest.mark.slow
def test_data_survives_a_restart_on_a_sqlite_file(tmp_path: Path) -> None:
    db = str(tmp_path / "sandbox.db")
    first = make_sandbox(db)
    pid = first.create().json()["id"]
    for state in JOIN[:3]:
        assert first.update(pid, step(state)).status_code == 200
    before = first.get(pid).json()
    token = first.token()
    sync(first.store.close())

    second = make_sandbox(db)
    second._tokens[(ACCOUNT_A, False)] = token  # same signing secret: old tokens still work
    assert second.get(pid).json() == before
    assert [p["id"] for p in second.list().json()["data"]] == [pid]
    assert second.update(pid, step(JOIN[3])).json()["current_state"] == JOIN[3]
    sync(second.store.close())
    assert (tmp_path / "sandbox.db").exists()


def _suspended(sb: Any) -> str:
    pid: str = sb.create().json()["id"]
    for state in JOIN:
        sb.update(pid, step(state))
    r = sb.update(pid, step("SUSPENDED", suspension_reasons=["AWAITING_TELEMETRY"]))
    assert r.status_code == 200
    return pid


def slowly(apply: Any, p: Any, record: Any) -> Any:
    """The change, with time for another connection to read the same version meanwhile."""
    time.sleep(0.002)
    return apply(p, [record], p.time_updated)


def test_threads_and_two_connections_on_one_file_never_lose_a_write(tmp_path: Path) -> None:
    db = str(tmp_path / "race.db")
    sb = make_sandbox(db)
    pid = _suspended(sb)
    start = len(sb.get(pid).json()["participation_state"])
    stores = [sb.store, open_store(db)]  # two connections: like two server processes
    ns = Namespace(ACCOUNT_A, False)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(REASON_SETS) - 1)

    def worker(i: int, reasons: list[str]) -> None:
        record = Record(
            State.SUSPENDED, Status.IN_PROGRESS, suspension_reasons=tuple(map(Reason, reasons))
        )
        barrier.wait()
        try:
            sync(stores[i % 2].update(ns, pid, lambda p: slowly(apply_update, p, record)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(i, rs)) for i, rs in enumerate(REASON_SETS[1:])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = sync(stores[1].get(ns, pid))
    assert len(final.timeline) == start + len(threads)
    sync(stores[1].close())
    sync(sb.store.close())

"""Print what many heavy control calls at once do to a served sandbox (figures, no asserts).

    .venv/bin/python bench/heavy_admission.py [--size 100000] [--workers 2]

Issue 18's cases against `vpp-sandbox serve --workers N` on a new SQLite file, while tenant B
retrieves one of its participations back to back on its own connection: (1) one account fires
8 world loads of `--size` into its own namespace at once; (2) 6 accounts load a world of
`--size` at once. For each: the answers by status and code, what the namespace holds (read
from the file), the most world-building processes alive at once, the peak memory of the
server's whole process tree, the WAL's peak size and B's latencies. (3) An account is deleted
while its world loads: the rows of it left anywhere. Everything goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.concurrently import together
from tests.process_tree import descendants, rss_mb
from tests.serve_process import served


class Sampler(threading.Thread):
    """Every 50 ms: the tree's memory, its world-building processes, the WAL's size."""

    def __init__(self, pid: int, db: str) -> None:
        super().__init__(daemon=True)
        self.pid, self.db = pid, db
        self.builders = self.rss = self.wal = 0.0
        self.stop = threading.Event()
        self.servers = {pid, *descendants(pid)}  # uvicorn's workers are spawned processes too

    def run(self) -> None:
        while not self.stop.is_set():
            tree = [self.pid, *descendants(self.pid)]
            self.rss = max(self.rss, sum(rss_mb(p) for p in tree))
            building = sum(_is_builder(p) for p in tree if p not in self.servers)
            self.builders = max(self.builders, building)
            with contextlib.suppress(OSError):
                self.wal = max(self.wal, os.stat(self.db + "-wal").st_size / 1e6)
            time.sleep(0.05)


def _is_builder(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in command and b"resource_tracker" not in command


class Prober(threading.Thread):
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.samples: list[tuple[float, float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                start = time.perf_counter()
                status = session.get(self.url, headers=self.headers, timeout=60).status_code
                self.samples.append((start, (time.perf_counter() - start) * 1000, status))

    def summary(self, start: float, end: float) -> str:
        window = [(ms, st) for at, ms, st in self.samples if start <= at < end]
        if not window:
            return "B: no answers"
        ordered = sorted(ms for ms, _ in window)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        errors = sum(st != 200 for _, st in window)
        return (f"B: n={len(ordered)} p50 {statistics.median(ordered):.2f} ms  p99 {p99:.2f} ms"
                f"  max {ordered[-1]:.2f} ms  errors {errors}")


def _account(base: str) -> tuple[str, dict[str, str]]:
    made = requests.post(f"{base}/_sandbox/accounts", timeout=30).json()
    login = requests.get(f"{base}/login", auth=(made["account_id"], made["test_key"]),
                         timeout=30).json()
    return made["account_id"], {"Authorization": f"Bearer {login['bearer_token']}",
                                "Connection": "close"}


def _load(base: str, headers: dict[str, str], size: int) -> tuple[int, str]:
    r = requests.post(f"{base}/_sandbox/world", json={"world": "load", "size": size},
                      headers=headers, timeout=600)
    return r.status_code, "" if r.status_code < 400 else r.json()["code"]


def _held(db: str, account_id: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM participations WHERE account_id=?",
                                (account_id,)).fetchone()[0])


def _phase(label: str, base: str, db: str, pid: int, prober: Prober,
           calls: list[Callable[[], Any]]) -> list[Any]:
    sampler = Sampler(pid, db)
    sampler.start()
    start = time.perf_counter()
    answers = together(calls)
    took = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    tally = collections.Counter(f"{s} {c}".strip() for s, c in answers)
    print(f"{label}: {took:.1f} s, answers {dict(tally)}")
    print(f"  world builders at once (most) {sampler.builders:.0f}, process tree peak "
          f"{sampler.rss:.0f} MB, WAL peak {sampler.wal:.1f} MB")
    print(f"  {prober.summary(start, start + took)}")
    return answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "heavy.db")
        with served("--db", db, "--workers", str(args.workers)) as server:
            _run(server.base_url, db, server.process.pid, args.size)
    return 0


def _run(base: str, db: str, pid: int, size: int) -> None:
    _, b = _account(base)
    body = {"device_id": "dev_" + os.urandom(12).hex(), "provider_id": "prv_" + "1" * 24,
            "programme_id": "vpr_" + "1" * 24}
    mine = requests.post(f"{base}/vpp-participations", json=body, headers=b, timeout=30).json()
    prober = Prober(f"{base}/vpp-participations/{mine['id']}", {"Authorization":
                                                                b["Authorization"]})
    prober.start()
    print(f"heavy admission: size {size:,}, server pid {pid}, cores {os.cpu_count()}")
    a_id, a = _account(base)
    _phase("8 loads into one namespace", base, db, pid, prober,
           [lambda: _load(base, a, size) for _ in range(8)])
    print(f"  the namespace holds {_held(db, a_id):,} participations "
          f"(--max-participations 100,000)")
    tenants = [_account(base) for _ in range(6)]
    _phase("6 accounts load at once", base, db, pid, prober,
           [functools.partial(_load, base, h, size) for _, h in tenants])
    c_id, c = _account(base)

    def delete_soon() -> tuple[int, str]:
        while _held(db, c_id) == 0:
            time.sleep(0.05)
        r = requests.delete(f"{base}/_sandbox/accounts/{c_id}", headers=c, timeout=600)
        return r.status_code, ""

    _phase("a delete during a load", base, db, pid, prober,
           [lambda: _load(base, c, size), delete_soon])
    print(f"  rows of the deleted account left: {_held(db, c_id):,}")
    prober.stop.set()


if __name__ == "__main__":
    sys.exit(main())

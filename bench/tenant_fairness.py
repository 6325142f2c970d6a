"""Print how much one tenant's heavy sandbox operations hold up another tenant (no asserts).

    .venv/bin/python bench/tenant_fairness.py [--size 100000] [--db sqlite|postgresql://…]

A real `vpp-sandbox serve` process on 127.0.0.1 with two accounts. Tenant B retrieves one of
its participations over and over on one keep-alive connection, timing each answer. Meanwhile
tenant A, one after the other: loads a world of `--size` participations, advances its clock
by ten years (every participation falls due), and resets its namespace. For each of A's
operations the script prints how long it took and B's latency while it ran (p50, p99, max),
next to B's latency with nothing else running; then the server's resident memory and the size
of the data file (and its WAL) after each step.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.serve_process import served

A = ("acc_" + "a" * 24, "sk_test_" + "a" * 24)
B = ("acc_" + "b" * 24, "sk_test_" + "b" * 24)


def _token(base: str, account: tuple[str, str]) -> dict[str, str]:
    r = requests.get(f"{base}/login", auth=account, timeout=10)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['bearer_token']}"}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _size_mb(db: str) -> str:
    if not os.path.exists(db):
        return "-"
    wal = f"{db}-wal"
    main = os.path.getsize(db) / 1e6
    log = os.path.getsize(wal) / 1e6 if os.path.exists(wal) else 0.0
    return f"{main:7.1f} MB file + {log:6.1f} MB WAL"


class Prober(threading.Thread):
    """Tenant B: retrieves one participation back to back, recording (start, latency)."""

    def __init__(self, base: str, headers: dict[str, str], pid: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base}/vpp-participations/{pid}"
        self.headers = headers
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            start = time.perf_counter()
            r = session.get(self.url, headers=self.headers, timeout=60)
            if r.status_code != 200:
                self.errors += 1
            self.samples.append((start, (time.perf_counter() - start) * 1000))

    def between(self, start: float, end: float) -> list[float]:
        return [ms for at, ms in self.samples if start <= at < end]


def _summary(latencies: list[float]) -> str:
    if not latencies:
        return "no answers"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (f"n={len(ordered):6d}  p50 {statistics.median(ordered):7.2f} ms  "
            f"p99 {p99:8.2f} ms  max {ordered[-1]:8.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite", help="sqlite (a new file) or a postgresql URL")
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "fair.db") if args.db == "sqlite" else args.db
        accounts = ("--account", ":".join(A), "--account", ":".join(B))
        with served("--db", db, *accounts) as server:
            return _run(server.base_url, db, server.process.pid, args)


def _run(base: str, db: str, pid: int, args: argparse.Namespace) -> int:
    a, b = _token(base, A), _token(base, B)
    body = {"device_id": "dev_" + secrets.token_hex(12), "provider_id": "prv_" + "1" * 24,
            "programme_id": "vpr_" + "1" * 24}
    mine = requests.post(f"{base}/vpp-participations", json=body, headers=b, timeout=10).json()
    prober = Prober(base, b, mine["id"])
    prober.start()
    time.sleep(0.5)
    print(f"Tenant fairness: {args.size:,} participations, store {args.db}, "
          f"server pid {pid}")
    start = time.perf_counter()
    time.sleep(args.baseline_seconds)
    print(f"{'B alone':<28} {'':>9}  {_summary(prober.between(start, time.perf_counter()))}")
    print(f"{'':<28} {'':>9}  RSS {_rss_mb(pid):6.0f} MB   {_size_mb(db)}")
    steps = [
        ("A loads a world", "/_sandbox/world", {"world": "load", "size": args.size}),
        ("A advances 10 years", "/_sandbox/clock", {"advance": "P3650D"}),
        ("A resets", "/_sandbox/reset", None),
    ]
    for label, path, payload in steps:
        start = time.perf_counter()
        r = requests.post(f"{base}{path}", json=payload, headers=a, timeout=600)
        end = time.perf_counter()
        status = "" if r.status_code == 200 else f" ({r.status_code}: {r.text[:120]})"
        print(f"{label:<28} {end - start:7.2f} s  {_summary(prober.between(start, end))}{status}")
        print(f"{'':<28} {'':>9}  RSS {_rss_mb(pid):6.0f} MB   {_size_mb(db)}")
    prober.stop.set()
    prober.join()
    print(f"B's errors: {prober.errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print how a served sandbox answers while its store fails, and after (figures, no asserts).

    .venv/bin/python bench/store_outage.py [--store-timeout 3]

SQLite: another connection holds the file's write lock for 6 s; tenant A creates (a write)
while tenant B lists (a read): how long each waited and what it got. PostgreSQL (a throw-away
server of the machine's binaries): the server is stopped under a running sandbox for 6 s and
started again; a client retrieving back to back records each answer's status and time, and how
long after the database was back the first 200 came. Everything goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.postgres_server import start_postgres
from tests.serve_process import served

A = ("acc_" + "5a" * 12, "sk_test_" + "a1" * 16)
B = ("acc_" + "5b" * 12, "sk_test_" + "b2" * 16)


@contextmanager
def _served(db: str, timeout: float) -> Iterator[str]:
    accounts = ("--account", ":".join(A), "--account", ":".join(B))
    with served("--db", db, "--store-timeout", str(timeout), *accounts) as server:
        yield server.base_url


def _headers(base: str, account: tuple[str, str]) -> dict[str, str]:
    token = requests.get(f"{base}/login", auth=account, timeout=10).json()["bearer_token"]
    return {"Authorization": f"Bearer {token}"}


def _create(base: str, headers: dict[str, str]) -> tuple[int, float]:
    body = {"device_id": "dev_" + os.urandom(12).hex(), "provider_id": "prv_" + "1" * 24,
            "programme_id": "vpr_" + os.urandom(12).hex()}
    start = time.perf_counter()
    r = requests.post(f"{base}/vpp-participations", json=body, headers=headers, timeout=60)
    return r.status_code, time.perf_counter() - start


def _timed(base: str, path: str, headers: dict[str, str]) -> tuple[int, float]:
    start = time.perf_counter()
    r = requests.get(f"{base}{path}", headers=headers, timeout=60)
    return r.status_code, time.perf_counter() - start


def sqlite_lock(timeout: float, tmp: str) -> None:
    db = str(Path(tmp) / "locked.db")
    with _served(db, timeout) as base:
        a, b = _headers(base, A), _headers(base, B)
        _create(base, a)
        outside = sqlite3.connect(db, isolation_level=None)
        outside.execute("BEGIN IMMEDIATE")
        writes: list[tuple[int, float]] = []
        reads: list[tuple[int, float]] = []
        held_until = time.monotonic() + 6

        def write() -> None:
            while time.monotonic() < held_until:
                writes.append(_create(base, a))

        writer = threading.Thread(target=write)
        writer.start()
        while writer.is_alive():
            reads.append(_timed(base, "/vpp-participations?limit=5", b))
        outside.execute("ROLLBACK")
        after = _create(base, a)
        print("SQLite, write lock held elsewhere for 6 s:")
        print(f"  A's creates: {dict(collections.Counter(s for s, _ in writes))}, each "
              f"{min(t for _, t in writes):.2f} to {max(t for _, t in writes):.2f} s")
        print(f"  B's reads meanwhile: {len(reads)}, "
              f"{dict(collections.Counter(s for s, _ in reads))}, slowest "
              f"{max(t for _, t in reads) * 1000:.1f} ms")
        print(f"  lock gone: A's next create {after[0]} in {after[1] * 1000:.1f} ms")


def postgres_outage(timeout: float) -> None:
    server = start_postgres()
    try:
        url = server.database()
        with _served(url, timeout) as base:
            a = _headers(base, A)
            _create(base, a)
            pid = requests.get(f"{base}/vpp-participations?limit=1", headers=a,
                               timeout=10).json()["data"][0]["id"]
            answers: list[tuple[float, int, float]] = []
            stop = threading.Event()

            def client() -> None:
                while not stop.is_set():
                    at = time.monotonic()
                    code, took = _timed(base, f"/vpp-participations/{pid}", a)
                    answers.append((at, code, took))

            thread = threading.Thread(target=client)
            thread.start()
            time.sleep(1)
            down = time.monotonic()
            server.pause()
            time.sleep(6)
            server.resume()
            back = time.monotonic()
            time.sleep(3)
            stop.set()
            thread.join()
        during = [(c, t) for at, c, t in answers if down <= at < back]
        after = [(at, c, t) for at, c, t in answers if at >= back]
        first_ok = next((at + t - back for at, c, t in after if c == 200), None)
        print("PostgreSQL stopped for 6 s, then started again:")
        print(f"  answers while down: {dict(collections.Counter(c for c, _ in during))}, "
              f"slowest {max((t for _, t in during), default=0):.2f} s")
        print(f"  after: {dict(collections.Counter(c for _, c, _ in after))}; first 200 "
              f"{first_ok:.2f} s after the database was back" if first_ok is not None
              else "  after: no 200")
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store-timeout", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)
        sqlite_lock(args.store_timeout, tmp)
        postgres_outage(args.store_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The store failing is a quick `503 store_unavailable` with `Retry-After`, never a hang, and
the server recovers as soon as the store does (real `serve` processes, real databases).

SQLite: another process holding the file's write lock stalls no read (the event loop never
waits for the lock) and makes a write a 503 after `--store-timeout`; the write-ahead log stays
under `--wal-bytes` while a world loads. PostgreSQL: the server stopped under a running
sandbox, then started again; a lock held by another session.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.postgres_server import PostgresServer
from tests.serve_process import served

pytestmark = pytest.mark.slow

A = ("acc_" + "5a" * 12, "sk_test_" + "a1" * 16)
B = ("acc_" + "5b" * 12, "sk_test_" + "b2" * 16)
ACCOUNTS = [arg for account in (A, B) for arg in ("--account", ":".join(account))]
TIMEOUT = 1.5  # --store-timeout of these servers


class Tenant:
    def __init__(self, base: str, account: tuple[str, str]) -> None:
        self.base = base
        # One client, as a tenant runs one: its connections are kept alive and reused. (A new
        # connection per call, kept open by each answer a test holds on to, would reach the
        # server's --max-connections in a fast loop and be answered 503 server_busy.)
        self.session = requests.Session()
        r = self.session.get(base + "/login", auth=account, timeout=10)
        assert r.status_code == 200, r.text
        self.headers = {"Authorization": f"Bearer {r.json()['bearer_token']}"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[requests.Response, float]:
        started = time.monotonic()
        r = self.session.request(method, self.base + path, json=body, headers=self.headers,
                                 timeout=30)
        return r, time.monotonic() - started

    def create(self) -> tuple[requests.Response, float]:
        body = {"device_id": "dev_" + os.urandom(12).hex(), "provider_id": "prv_" + "1" * 24,
                "programme_id": "vpr_" + os.urandom(12).hex()}
        return self.call("POST", "/vpp-participations", body)


def _unavailable(r: requests.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "store_unavailable" and r.json()["type"] == "api_error"
    assert int(r.headers["retry-after"]) >= 1


def test_sqlite_another_process_holding_the_lock_stalls_no_read_and_writes_get_503(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "locked.db")
    with served("--db", db, "--store-timeout", str(TIMEOUT), *ACCOUNTS) as server:
        a, b = Tenant(server.base_url, A), Tenant(server.base_url, B)
        assert a.create()[0].status_code == 201 and b.create()[0].status_code == 201
        outside = sqlite3.connect(db, isolation_level=None)
        outside.execute("BEGIN IMMEDIATE")  # another process's write lock, held
        try:
            writes: list[tuple[requests.Response, float]] = []
            writer = threading.Thread(target=lambda: writes.append(a.create()))
            writer.start()
            reads = []
            while writer.is_alive():  # B reads while A's create waits for the lock
                reads.append(b.call("GET", "/vpp-participations?limit=5"))
            writer.join()
            # The write: a 503 within the store timeout (plus the request's own time).
            (r, took), = writes
            _unavailable(r)
            assert took < TIMEOUT + 1.0, took
            assert reads and all(read.status_code == 200 for read, _ in reads)
            assert max(t for _, t in reads) < 0.5, [t for _, t in reads]
        finally:
            outside.execute("ROLLBACK")
            outside.close()
        # The lock is gone: writes go through at once.
        r, took = a.create()
        assert r.status_code == 201 and took < 1.0


def test_sqlite_the_write_ahead_log_stays_bounded_while_a_world_loads(tmp_path: Path) -> None:
    db = str(tmp_path / "wal.db")
    bound = 1_000_000
    with served("--db", db, "--wal-bytes", str(bound), *ACCOUNTS) as server:
        a = Tenant(server.base_url, A)
        sizes: list[int] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                with contextlib.suppress(OSError):
                    sizes.append(os.stat(db + "-wal").st_size)
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            r, _ = a.call("POST", "/_sandbox/world", {"world": "load", "size": 2000})
            assert r.status_code == 200, r.text
            r, _ = a.call("POST", "/_sandbox/clock", {"advance": "P30D"})
            assert r.status_code == 200, r.text
        finally:
            done.set()
            watcher.join()
        assert sizes and max(sizes) < 2 * bound, max(sizes)


@contextlib.contextmanager
def _on_postgres(server: PostgresServer) -> Iterator[tuple[str, Tenant, str]]:
    """A sandbox on a fresh database of `server`: its URL, tenant A, and A's participation."""
    url = server.database()
    with served("--db", url, "--store-timeout", str(TIMEOUT), *ACCOUNTS) as sandbox:
        a = Tenant(sandbox.base_url, A)
        created, _ = a.create()
        assert created.status_code == 201
        yield url, a, created.json()["id"]


def test_postgres_down_is_a_quick_503_and_its_return_is_served_at_once(
    own_postgres: PostgresServer,
) -> None:
    with _on_postgres(own_postgres) as (_, a, pid):
        for _ in range(5):  # several pooled connections in use, so several to lose
            assert a.call("GET", f"/vpp-participations/{pid}")[0].status_code == 200
        own_postgres.pause()
        try:
            for method, path in [("GET", f"/vpp-participations/{pid}"),
                                 ("GET", "/_sandbox/clock"), ("POST", "/vpp-participations")]:
                r, took = a.create() if method == "POST" else a.call(method, path)
                _unavailable(r)
                assert took < TIMEOUT + 1.5, (path, took)
        finally:
            own_postgres.resume()
        # Back: the first request is served, and every one after it.
        r, took = a.call("GET", f"/vpp-participations/{pid}")
        assert r.status_code == 200, r.text
        assert took < TIMEOUT + 1.0, took
        for _ in range(10):
            assert a.call("GET", f"/vpp-participations/{pid}")[0].status_code == 200
        assert a.create()[0].status_code == 201


def test_postgres_a_lock_held_elsewhere_is_a_503_within_the_timeout(
    own_postgres: PostgresServer,
) -> None:
    import psycopg

    step = {"participation_state": [{"state": "AWAITING_CUSTOMER_CONSENT",
                                     "status": "IN_PROGRESS"}]}
    with _on_postgres(own_postgres) as (url, a, pid):
        with psycopg.connect(url) as outside:
            outside.execute("SELECT 1 FROM participations WHERE id=%s FOR UPDATE", (pid,))
            r, took = a.call("POST", f"/vpp-participations/{pid}", step)
            _unavailable(r)
            assert took < TIMEOUT + 1.5, took
            outside.rollback()
        r, _ = a.call("POST", f"/vpp-participations/{pid}", step)
        assert r.status_code == 200, r.text

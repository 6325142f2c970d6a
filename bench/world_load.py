"""Print how fast a big world loads into the sandbox, and how fast it then answers (no asserts).

    .venv/bin/python bench/world_load.py [--size 100000] [--seed 0] [--db FILE|:memory:]

What `vpp-sandbox serve --world load --size N` does at start-up (build the world, shift it to
the clock, bulk-insert it into an empty store), then the first page of the biggest namespace's
list through the in-process app, the autopilot's per-request probe when nothing is due, and a
day of sandbox time applied to every participation that falls due in it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

from vpp_sandbox.mock_server.app import create_app  # noqa: E402
from vpp_sandbox.mock_server.autopilot import catch_up  # noqa: E402
from vpp_sandbox.mock_server.catalog import Catalog  # noqa: E402
from vpp_sandbox.mock_server.clock import Namespace, SandboxClock  # noqa: E402
from vpp_sandbox.mock_server.settings import Settings  # noqa: E402
from vpp_sandbox.mock_server.store_sqlite import SqliteStore  # noqa: E402
from vpp_sandbox.mock_server.stores import open_store  # noqa: E402
from vpp_sandbox.mock_server.worlds import prepare  # noqa: E402


def _row(label: str, value: str) -> None:
    print(f"{label:<52} {value}")


def _latencies(call: object, n: int) -> str:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[int(0.95 * (n - 1))]
    return f"p50 {statistics.median(times):6.2f} ms   p95 {p95:6.2f} ms   (n={n})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", help="SQLite file (default: a new temporary file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "load.db")
        settings = Settings(db=db, world="load", seed=args.seed, size=args.size)
        store = open_store(db)
        assert isinstance(store, SqliteStore)
        clock = SandboxClock(store)
        catalog = Catalog(store)
        start = time.perf_counter()
        settings, note = anyio.run(prepare, settings, store, clock, catalog)
        _row("serve --world load: build + shift + insert", f"{time.perf_counter() - start:8.2f} s")
        print(f"  {note}")

        app = create_app(settings, store, clock=clock, catalog=catalog)
        client = app.test_client()
        per_ns = Counter(
            (a, bool(m))
            for a, m in store._db.execute("SELECT account_id, live_mode FROM participations")
        )
        (account_id, live), count = per_ns.most_common(1)[0]
        key = next(
            a.api_key
            for a in settings.accounts
            if a.account_id == account_id and a.live_mode is live
        )
        token = client.get("/login", auth=(account_id, key)).json()["bearer_token"]
        headers = {"Authorization": f"Bearer {token}"}
        _row(f"biggest namespace ({'live' if live else 'test'})", f"{count:8,} participations")

        first = time.perf_counter()
        page = client.get("/vpp-participations", headers=headers)
        cold = (time.perf_counter() - first) * 1000
        _row("first list page, first request (cold)", f"{cold:8.1f} ms")
        assert page.status_code == 200 and len(page.json()["data"]) == 30
        _row(
            "GET /vpp-participations (30 per page)",
            _latencies(lambda: client.get("/vpp-participations", headers=headers), 50),
        )
        last = page.json()["data"][-1]["id"]
        _row(
            "GET /vpp-participations?starting_after=… ",
            _latencies(
                lambda: client.get(
                    f"/vpp-participations?starting_after={last}", headers=headers
                ),
                50,
            ),
        )
        ns = Namespace(account_id, live)
        now = anyio.run(clock.now, ns)
        _row(
            "autopilot probe with nothing due (store)",
            _latencies(lambda: anyio.run(catch_up, store, ns, now), 200),
        )

        start = time.perf_counter()
        r = client.post("/_sandbox/clock", json={"advance": "P1D"}, headers=headers)
        moved_time = time.perf_counter() - start
        assert r.status_code == 200, r.text
        due = store._db.execute(
            "SELECT COUNT(*) FROM participations WHERE account_id=? AND live_mode=? "
            "AND next_due_at IS NOT NULL",
            (account_id, int(live)),
        ).fetchone()[0]
        _row("POST /_sandbox/clock advance P1D (applies due moves)", f"{moved_time:8.2f} s")
        _row("  participations still scheduled afterwards", f"{due:8,}")
        store.close_now()
    return 0


if __name__ == "__main__":
    sys.exit(main())

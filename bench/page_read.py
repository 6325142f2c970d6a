"""Print what a list's first read costs in the store: the namespace's state and a page apart
(two statements) or together (one statement), on SQLite and on PostgreSQL.

    .venv/bin/python bench/page_read.py [--reads 1000] [--rounds 3] [--size 10000]

Each store holds the `load` world (seed 1, --size); the namespace is the world's largest. The
reads run one after the other in this process (uvloop where installed, as `serve` runs), and
the figure is the CPU time of this process per read (the minimum of the rounds; wall time
beside it). PostgreSQL is the tests' throw-away server on this machine (`fsync=off`), so its
own work runs on the same cores; without the Debian binaries it is skipped, saying so. The
store reads a page with the state where its `page_beside_state` says so (`pipeline.Identify`
asks then); this script measures both ways on both stores, which is how that choice was made.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.postgres_server import PostgresUnavailable, start_postgres
from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import Namespace, SandboxClock
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.store import PageQuery, Store
from vpp_sandbox.mock_server.stores import open_store
from vpp_sandbox.mock_server.worlds import prepare


async def _largest(store: Store) -> Namespace:
    counts: dict[Namespace, int] = {}
    async for p in store.participations():
        ns = Namespace(p.account_id, p.live_mode)
        counts[ns] = counts.get(ns, 0) + 1
    return max(counts, key=lambda ns: counts[ns])


async def measure(url: str, size: int, reads: int, rounds: int) -> dict[str, tuple[float, float]]:
    """(CPU, wall) seconds per read of each way, the minimum of the rounds."""
    store = open_store(url)
    try:
        settings = Settings(db=url, world="load", size=size, seed=1)
        await prepare(settings, store, SandboxClock(store), Catalog(store))
        ns = await _largest(store)
        query = PageQuery(limit=30)

        async def apart() -> None:
            await store.namespace_state(ns)
            await store.list_json(ns, limit=query.limit)

        store.page_beside_state = True  # asked for either way: `together` reads it so

        async def together() -> None:
            await store.namespace_state(ns, page=query)

        ways: dict[str, Callable[[], Awaitable[None]]] = {
            "two statements": apart,
            "one statement": together,
        }
        best: dict[str, tuple[float, float]] = {}
        for _ in range(rounds):
            for name, read in ways.items():  # in turn, round after round
                for _ in range(50):
                    await read()
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(reads):
                    await read()
                took = ((time.process_time() - cpu) / reads, (time.perf_counter() - wall) / reads)
                best[name] = min(best.get(name, took), took)
        return best
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    try:
        import uvloop

        run: Callable[..., dict[str, tuple[float, float]]] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a default dependency where it builds
        run = asyncio.run
    results: dict[str, dict[str, tuple[float, float]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="vpp-page-"))
    try:
        results["SQLite"] = run(measure(str(tmp / "page.db"), args.size, args.reads, args.rounds))
        try:
            pg = start_postgres()
        except PostgresUnavailable as exc:
            print(f"PostgreSQL skipped: {exc}")
        else:
            try:
                results["PostgreSQL"] = run(
                    measure(pg.database(), args.size, args.reads, args.rounds)
                )
            finally:
                pg.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\nA list's first read: the namespace's state and a page of 30, {args.size:,} "
        f"participations; per read, the minimum of {args.rounds} rounds of {args.reads:,}"
    )
    for kind, ways in results.items():
        for name, (cpu, wall) in ways.items():
            print(f"  {kind:<11} {name:<15} CPU {cpu * 1e6:6.0f} us   wall {wall * 1e6:6.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())

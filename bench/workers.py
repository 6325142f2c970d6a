"""Print the throughput of 1, 2 and 4 worker processes on SQLite and on PostgreSQL (no asserts).

    .venv/bin/python bench/workers.py [--rounds 3] [--seconds 5] [--workers 1,2,4]
                                      [--stores sqlite,postgres] [--size 10000]

Every configuration is `vpp-sandbox serve --workers N` as a user runs it (default settings,
autopilot on) on its own store holding the `load` world of `--size` participations: a new
SQLite file, or a new database on a PostgreSQL server this script starts from the machine's
binaries on a free loopback port (as the tests do). All configurations run at once; wrk
(`-t1 -c16`, 127.0.0.1 only) drives them in rotation, each operation in turn, and the table
gives the median of the rounds with their spread. On this 2-core machine wrk and the servers
share the same two cores: the figures say what the sandbox does on such a machine, not what a
larger one would.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    ROOT,
    VENV_PYTHON,
    Sandbox,
    Server,
    Summary,
    Target,
    basic_auth,
    free_port,
    rotate,
    suspended_pool,
    token_for,
    wait_ready,
    write_scripts,
)

sys.path.insert(0, str(ROOT))
from tests.postgres_server import PostgresUnavailable, start_postgres

OPERATIONS = ("retrieve", "list 30", "create", "update")


def start(tmp: Path, name: str, db: str, workers: int, size: int) -> Sandbox:
    port = free_port()
    cmd = [str(VENV_PYTHON), "-m", "vpp_sandbox", "serve", "--port", str(port), "--db", db,
           "--workers", str(workers), "--world", "load", "--size", str(size), "--seed", "1"]
    started = time.perf_counter()
    server = Server(cmd, tmp / f"{name}.log")
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/login", basic_auth(), server)
    return Sandbox(server, base, token_for(base), Path(db), time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    kinds = args.stores.split(",")
    pg = None
    sandboxes: dict[str, Sandbox] = {}
    with tempfile.TemporaryDirectory(prefix="vpp-workers-") as tmp_name:
        tmp = Path(tmp_name)
        scripts = write_scripts(tmp)
        try:
            if "postgres" in kinds:
                try:
                    pg = start_postgres()
                except PostgresUnavailable as exc:
                    print(f"PostgreSQL skipped: {exc}")
                    kinds.remove("postgres")
            for kind in kinds:
                for n in counts:
                    name = f"{kind} x{n}"
                    db = str(tmp / f"{kind}{n}.db") if kind == "sqlite" else pg.database()  # type: ignore[union-attr]
                    sandboxes[name] = start(tmp, name.replace(" ", ""), db, n, args.size)
                    print(f"started {name} in {sandboxes[name].startup:.1f} s", flush=True)
            return run(args, sandboxes, scripts)
        finally:
            for sb in sandboxes.values():
                sb.server.stop()
            if pg is not None:
                pg.stop()


def run(args: argparse.Namespace, sandboxes: dict[str, Sandbox], scripts: dict[str, Path]) -> int:
    results: dict[tuple[str, str], Summary] = {}
    for op in OPERATIONS:
        targets: list[Target] = []
        for name, sb in sandboxes.items():
            if op == "retrieve":
                target = Target(name, f"{sb.base}/vpp-participations/{sb.first_id()}", sb.token)
            elif op == "list 30":
                target = Target(name, f"{sb.base}/vpp-participations?limit=30", sb.token)
            elif op == "create":
                target = Target(name, f"{sb.base}/vpp-participations", sb.token, scripts["create"])
            else:
                ids = suspended_pool(sb.base, sb.token, 50, tag=f"W{len(targets)}")
                target = Target(name, f"{sb.base}/vpp-participations", sb.token,
                                scripts["update"], {"BENCH_IDS": ",".join(ids)})
            targets.append(target)
        print(f"{op}: {len(targets)} configurations in rotation", flush=True)
        runs = rotate(targets, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                      connections=args.connections)
        for name, rs in runs.items():
            results[(op, name)] = Summary.of(rs)
    print()
    print(f"Workers, {args.size:,} participations, wrk -t1 -c{args.connections}, "
          f"{args.rounds} rounds of {args.seconds:g} s, medians (min-max), p99 median")
    print(f"{'configuration':<16}" + "".join(f"{op:>28}" for op in OPERATIONS))
    for name in sandboxes:
        cells = []
        for op in OPERATIONS:
            s = results[(op, name)]
            cells.append(f"{s.rps:7,.0f} ({s.rps_min:,.0f}-{s.rps_max:,.0f}) {s.p99:5.1f}ms"
                         + (f" E{s.errors}" if s.errors else ""))
        print(f"{name:<16}" + "".join(f"{c:>28}" for c in cells))
    # Issue 16's PostgreSQL target: a retrieve (one round trip) at >= 60% of SQLite's req/s.
    for workers in (1, 2, 4):
        sqlite, pg = f"sqlite x{workers}", f"postgres x{workers}"
        if ("retrieve", sqlite) in results and ("retrieve", pg) in results:
            share = results[("retrieve", pg)].rps / results[("retrieve", sqlite)].rps
            verdict = "met" if share >= 0.6 else f"MISSED by {(0.6 - share) * 100:.0f} points"
            print(f"target: PostgreSQL retrieve >= 60% of SQLite's at {workers} worker"
                  f"{'s' if workers > 1 else ''}: {share:.0%}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

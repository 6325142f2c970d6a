"""Before and after one change: two sandboxes, two versions of the code, wrk in rotation.

  .venv/bin/python bench/ab.py --before HEAD~1 [--after REF] [--ops retrieve,list]

`--before` (and `--after`, else the working tree) is a git revision exported into a temporary
directory and run from there (first on PYTHONPATH; the .venv's packages are shared). Each side
serves its own new file with the same world (`load`, seed 1, --size), or with `--store
postgres` its own database on one throw-away PostgreSQL server (the tests'); both are up at once and
measured in turn (A B A B ..., the first side moving each round). Prints, per operation, the
median req/s of each side with its min-max, the median p99 and the change. For per-step
figures in commit messages; bench/vs_prism.py is the comparison with Prism.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from harness import (
    ROOT,
    Sandbox,
    Server,
    Summary,
    Target,
    export,
    rotate,
    start_sandbox,
    suspended_pool,
    write_scripts,
)

sys.path.insert(0, str(ROOT))
from tests.postgres_server import start_postgres

OPS = ("retrieve", "list", "create", "update")


def targets_for(
    op: str, sides: dict[str, Sandbox], scripts: dict[str, Path], pools: dict[str, list[str]]
) -> list[Target]:
    out = []
    for name, sb in sides.items():
        if op == "retrieve":
            out.append(Target(name, f"{sb.base}/vpp-participations/{sb.first_id()}", sb.token))
        elif op == "list":
            out.append(Target(name, f"{sb.base}/vpp-participations?limit=30", sb.token))
        elif op == "create":
            out.append(Target(name, f"{sb.base}/vpp-participations", sb.token, scripts["create"]))
        else:
            out.append(
                Target(
                    name,
                    f"{sb.base}/vpp-participations/{pools[name][0]}",
                    sb.token,
                    scripts["update"],
                    {"BENCH_IDS": ",".join(pools[name])},
                )
            )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the 'before' side")
    parser.add_argument("--after", help="git revision of the 'after' side (else the work tree)")
    parser.add_argument("--ops", default=",".join(OPS), help="subset of " + ",".join(OPS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--no-autopilot", action="store_true")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    if set(ops) - set(OPS):
        parser.error(f"operations are {', '.join(OPS)}")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="vpp-ab-"))
    scripts = write_scripts(tmp)
    servers: list[Server] = []
    pg = start_postgres() if args.store == "postgres" else None
    try:
        sources = {
            "before": export(args.before, tmp / "before"),
            "after": export(args.after, tmp / "after") if args.after else None,
        }
        sides: dict[str, Sandbox] = {}
        for name, source in sources.items():
            sides[name] = start_sandbox(
                tmp, name, size=args.size, autopilot=not args.no_autopilot, source=source,
                database=None if pg is None else pg.database(),
            )
            servers.append(sides[name].server)
        pools: dict[str, list[str]] = {}
        if "update" in ops:
            pools = {name: suspended_pool(sb.base, sb.token, 50) for name, sb in sides.items()}
        results = {}
        for op in ops:
            results[op] = rotate(
                targets_for(op, sides, scripts, pools),
                rounds=args.rounds,
                seconds=args.seconds,
                warmup=args.warmup,
                connections=args.connections,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )
        after_label = args.after or "work tree"
        print(
            f"\nbefore {args.before}, after {after_label}: wrk -t1 -c{args.connections}, "
            f"{args.rounds} x {args.seconds:g} s in rotation, {args.size:,} participations "
            f"on {'PostgreSQL' if pg else 'SQLite'}, "
            f"autopilot {'off' if args.no_autopilot else 'on'}; median req/s (min-max), "
            "median p99"
        )
        for op, runs in results.items():
            b, a = Summary.of(runs["before"]), Summary.of(runs["after"])
            print(
                f"  {op:<9} before {b.rps:>7,.0f} ({b.rps_min:,.0f}-{b.rps_max:,.0f}) "
                f"p99 {b.p99:.1f} ms   after {a.rps:>7,.0f} ({a.rps_min:,.0f}-{a.rps_max:,.0f}) "
                f"p99 {a.p99:.1f} ms   {(a.rps / b.rps - 1) * 100:+.1f}%"
                + (f"   errors {b.errors}/{a.errors}" if b.errors or a.errors else "")
            )
        return 0
    finally:
        for server in servers:
            server.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

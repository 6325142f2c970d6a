"""The sandbox next to Stoplight Prism on our spec, both silent, driven by wrk on 127.0.0.1.

Run after `make install`:  .venv/bin/python bench/vs_prism.py  (or `make bench`;
`make bench BENCH_ARGS="--rounds 1 --seconds 2"` for a quick check). Needs wrk
(`apt-get install wrk`) and npm (Prism is installed from npm into bench/.prism on first use).

Servers, all up at once on loopback ports, each idle while another is measured:

- Prism `-v silent` (no log line per request; the sandbox logs none either) on our spec;
- Prism `-v silent` on a generated copy of our spec whose list example is a real page of 30
  participations read from the sandbox (the like-for-like list: both send the same bytes;
  the response sizes are printed to show it);
- the sandbox as users run it: `vpp-sandbox serve --world load --size 10000 --seed 1` with
  default settings (autopilot on, request and response validation on, one worker);
- the same with `--no-autopilot`, reported beside it;
- a minimal ASGI app on the same uvicorn (bench/minimal_asgi.py) reading the same file, with
  and without jsonschema-rs parameter and response validation: the floor to compare with.

For each operation (retrieve, list 30, create, update), a warm-up of each server, then wrk
`-t1 -cN -dS` on them in rotation (A B C A B C ..., the first server moving each round) for
`--rounds` rounds; the table gives the median req/s with its min-max and the median p99 with
its max, and the ratio of the medians to Prism silent. Then the sandbox is restarted on its
file (start-up time) next to one with a 100,000 world (retrieve and list in rotation, memory).
Last, every target of issue 16 with its measured value: met or MISSED. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import (
    ROOT,
    VENV_PYTHON,
    Result,
    Sandbox,
    Server,
    Summary,
    Target,
    fetch,
    free_port,
    rotate,
    rss_mb,
    start_sandbox,
    suspended_pool,
    wait_ready,
    write_scripts,
)

PRISM_DIR = ROOT / "bench" / ".prism"
PRISM_VERSION = "5.16.0"
OPS = ("retrieve", "list", "create", "update")
LABELS = {
    "prism": "Prism -v silent",
    "prism-page": "Prism -v silent, real page",
    "ours": "sandbox (autopilot on)",
    "ours-noap": "sandbox --no-autopilot",
    "ours-x2": "sandbox --workers 2",
    "minimal": "minimal ASGI + validation",
    "minimal-plain": "minimal ASGI, no validation",
}
OP_TITLES = {"retrieve": "retrieve", "list": "list 30", "create": "create", "update": "update"}


def ensure_prism() -> Path:
    binary = PRISM_DIR / "node_modules" / ".bin" / "prism"
    if not binary.exists():
        if not shutil.which("npm"):
            raise SystemExit("npm is needed to install Prism (apt-get install nodejs npm)")
        PRISM_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--silent",
                f"@stoplight/prism-cli@{PRISM_VERSION}",
            ],
            cwd=PRISM_DIR,
            check=True,
            timeout=600,
        )
    return binary


def start_prism(binary: Path, spec: Path, tmp: Path, name: str, probe: str) -> tuple[Server, str]:
    port = free_port()
    server = Server(
        [str(binary), "mock", str(spec), "-h", "127.0.0.1", "-p", str(port), "-v", "silent"],
        tmp / f"{name}.log",
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + probe, {"Authorization": "Bearer x"}, server)
    return server, base


def spec_with_page(page: bytes, out: Path) -> Path:
    """A copy of our spec whose list example is `page` (a real page of the sandbox), as JSON.

    Prism answers with the media type's `example`, or else one it builds from the schema's
    property examples (the 72-byte empty page); it never picks a named `examples` entry
    unless asked to, so the page goes into `example`.
    """
    from vpp_sandbox import openapi

    spec = openapi.load(openapi.CONTRACT)
    content = spec["paths"]["/vpp-participations"]["get"]["responses"]["200"]["content"]
    media = content["application/json"]
    media.pop("examples", None)
    media["example"] = json.loads(page)
    out.write_text(json.dumps(spec))
    return out


def start_minimal(db: Path, tmp: Path) -> tuple[Server, str]:
    port = free_port()
    server = Server(
        [
            str(VENV_PYTHON),
            str(ROOT / "bench" / "minimal_asgi.py"),
            "--db",
            str(db),
            "--port",
            str(port),
        ],
        tmp / "minimal.log",
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/plain/vpp-participations?limit=1", {}, server)
    return server, base


def fmt_row(label: str, s: Summary, ratio: str, size: str) -> str:
    spread = f"({s.rps_min:,.0f}-{s.rps_max:,.0f})"
    p99 = f"{s.p99:.1f} ({s.p99_max:.1f})"
    return f"  {label:<29} {s.rps:>8,.0f} {spread:<17} {p99:>13} {ratio:>8} {s.errors:>6} {size:>9}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the rotation (5)")
    parser.add_argument("--seconds", type=float, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up per server (2 s)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--size", type=int, default=10_000, help="participations (10,000)")
    parser.add_argument("--big", type=int, default=100_000, help="the scaling world (100,000)")
    parser.add_argument("--ops", default=",".join(OPS), help="subset of " + ",".join(OPS))
    parser.add_argument("--no-prism", action="store_true", help="the sandbox (and floor) only")
    parser.add_argument("--no-minimal", action="store_true", help="without the minimal ASGI app")
    parser.add_argument(
        "--no-scaling", action="store_true", help="skip the restart and the 100,000 world"
    )
    parser.add_argument("--quiet", action="store_true", help="no line per wrk run")
    parser.add_argument(
        "--no-workers", action="store_true", help="without the sandbox at --workers 2"
    )
    args = parser.parse_args()
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = set(ops) - set(OPS)
    if unknown:
        parser.error(f"unknown operation(s) {', '.join(sorted(unknown))}; use {', '.join(OPS)}")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    prism_binary = None if args.no_prism else ensure_prism()
    progress: Callable[[str], None] = (
        (lambda _: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    )
    runs_per_op = {"retrieve": 6, "list": 6, "create": 4, "update": 4}
    estimate = sum(runs_per_op[op] for op in ops) * (args.rounds * args.seconds + args.warmup)
    if not args.no_scaling:
        estimate += 4 * (args.rounds * args.seconds + args.warmup) + 30

    def run(targets: list[Target]) -> dict[str, list[Result]]:
        """The command line's rotation of wrk over `targets`."""
        return rotate(
            targets,
            rounds=args.rounds,
            seconds=args.seconds,
            warmup=args.warmup,
            connections=args.connections,
            progress=progress,
        )

    progress(f"about {estimate / 60:.0f} min of load, plus start-ups")

    tmp = Path(tempfile.mkdtemp(prefix="vpp-bench-"))
    scripts = write_scripts(tmp)
    servers: list[Server] = []
    try:
        # -- servers ------------------------------------------------------------------------
        ours = start_sandbox(tmp, "ours", size=args.size)
        servers.append(ours.server)
        noap = start_sandbox(tmp, "ours-noap", size=args.size, autopilot=False)
        servers.append(noap.server)
        sandboxes: dict[str, Sandbox] = {"ours": ours, "ours-noap": noap}
        if not args.no_workers:
            two = start_sandbox(tmp, "ours-x2", size=args.size, workers=2)
            servers.append(two.server)
            sandboxes["ours-x2"] = two
        bases: dict[str, tuple[str, str | None]] = {
            name: (sb.base, sb.token) for name, sb in sandboxes.items()
        }
        if not args.no_minimal:
            minimal, minimal_base = start_minimal(noap.db, tmp)
            servers.append(minimal)
            bases["minimal"] = (minimal_base, None)
            bases["minimal-plain"] = (minimal_base + "/plain", None)
        ids = {name: sb.first_id() for name, sb in sandboxes.items()}
        ids["minimal"] = ids["minimal-plain"] = ids["ours-noap"]
        page = fetch(f"{ours.base}/vpp-participations?limit=30", ours.token)
        if prism_binary is not None:
            probe = f"/vpp-participations/{ids['ours']}"
            prism, prism_base = start_prism(
                prism_binary, ROOT / "openapi" / "vpp-participations.yaml", tmp, "prism", probe
            )
            servers.append(prism)
            bases["prism"] = (prism_base, "x")
            page_spec = spec_with_page(page, tmp / "prism-page.json")
            prism_page, prism_page_base = start_prism(
                prism_binary, page_spec, tmp, "prism-page", probe
            )
            servers.append(prism_page)
            bases["prism-page"] = (prism_page_base, "x")
            ids["prism"] = ids["prism-page"] = ids["ours"]

        # -- what each sends: the like-for-like page must be the same bytes -----------------
        sizes: dict[str, dict[str, int]] = {"retrieve": {}, "list": {}}
        bodies: dict[str, bytes] = {}
        for name, (base, token) in bases.items():
            sizes["retrieve"][name] = len(fetch(f"{base}/vpp-participations/{ids[name]}", token))
            bodies[name] = fetch(f"{base}/vpp-participations?limit=30", token)
            sizes["list"][name] = len(bodies[name])

        # -- the rotation, operation by operation -------------------------------------------
        who = {
            "retrieve": ["prism", "ours", "ours-noap", "ours-x2", "minimal", "minimal-plain"],
            "list": ["prism", "prism-page", "ours", "ours-noap", "ours-x2", "minimal"],
            "create": ["prism", "ours", "ours-noap", "ours-x2"],
            "update": ["prism", "ours", "ours-noap", "ours-x2"],
        }
        pools: dict[str, list[str]] = {}
        results: dict[str, dict[str, list[Result]]] = {}
        for op in ops:
            if op == "update" and not pools:
                for name, sb in sandboxes.items():
                    pools[name] = suspended_pool(sb.base, sb.token, 50)
                pools["prism"] = pools["ours"]
            targets: list[Target] = []
            for name in who[op]:
                if name not in bases:
                    continue
                base, token = bases[name]
                if op == "retrieve":
                    targets.append(Target(name, f"{base}/vpp-participations/{ids[name]}", token))
                elif op == "list":
                    targets.append(Target(name, f"{base}/vpp-participations?limit=30", token))
                elif op == "create":
                    targets.append(
                        Target(name, f"{base}/vpp-participations", token, scripts["create"])
                    )
                else:
                    targets.append(
                        Target(
                            name,
                            f"{base}/vpp-participations/{pools[name][0]}",
                            token,
                            scripts["update"],
                            {"BENCH_IDS": ",".join(pools[name])},
                        )
                    )
            progress(f"{OP_TITLES[op]}: {', '.join(t.label for t in targets)}")
            results[op] = run(targets)
        rss_small = rss_mb(ours.server.proc.pid)
        for server in servers:
            server.stop()
        servers.clear()

        # -- start-up on the existing file; 10,000 against 100,000 ---------------------------
        scaling: dict[str, dict[str, list[Result]]] = {}
        restart_startup = big_startup = rss_big = float("nan")
        if not args.no_scaling:
            small = start_sandbox(tmp, "restart", size=args.size, db=ours.db)
            servers.append(small.server)
            restart_startup = small.startup
            big = start_sandbox(tmp, "big", size=args.big)
            servers.append(big.server)
            big_startup = big.startup
            for op in ("retrieve", "list"):
                targets = []
                for name, sb in (("small", small), ("big", big)):
                    path = (
                        f"/vpp-participations/{sb.first_id()}"
                        if op == "retrieve"
                        else "/vpp-participations?limit=30"
                    )
                    targets.append(Target(name, sb.base + path, sb.token))
                progress(f"{OP_TITLES[op]}: {args.size:,} and {args.big:,} participations")
                scaling[op] = run(targets)
            rss_big = rss_mb(big.server.proc.pid)

        report(
            args,
            results,
            sizes,
            bodies,
            scaling,
            ours,
            rss_small,
            restart_startup,
            big_startup,
            rss_big,
        )
        return 0
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, list[Result]]],
    sizes: dict[str, dict[str, int]],
    bodies: dict[str, bytes],
    scaling: dict[str, dict[str, list[Result]]],
    ours: Sandbox,
    rss_small: float,
    restart_startup: float,
    big_startup: float,
    rss_big: float,
) -> None:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"\n{when}: wrk -t1 -c{args.connections}, {args.rounds} round(s) x {args.seconds:g} s "
        f"per server in rotation after a {args.warmup:g} s warm-up; {args.size:,} participations "
        "(world `load`, seed 1); one uvicorn worker unless said; "
        "request and response validation on.\n"
        "req/s: median of the rounds (min-max); p99 ms: median (max); x Prism: ratio of the "
        "medians to Prism -v silent; errors: non-2xx answers and socket errors.\n"
    )
    print(
        f"  {'server':<29} {'req/s':>8} {'(min-max)':<17} {'p99 ms (max)':>13} "
        f"{'x Prism':>8} {'errors':>6} {'body B':>9}"
    )
    summaries: dict[str, dict[str, Summary]] = {}
    for op, by_server in results.items():
        print(OP_TITLES[op])
        summaries[op] = {name: Summary.of(runs) for name, runs in by_server.items()}
        prism = summaries[op].get("prism")
        for name, s in summaries[op].items():
            ratio = f"{s.rps / prism.rps:.2f}x" if prism else ""
            size = f"{sizes[op][name]:,}" if op in sizes and name in sizes[op] else ""
            print(fmt_row(LABELS[name], s, ratio, size))
    if "prism-page" in bodies:
        same = bodies["prism-page"] == bodies["ours"]
        equal_json = json.loads(bodies["prism-page"]) == json.loads(bodies["ours"])
        print(
            "\nlist 30, like for like: Prism's page is the sandbox's page "
            + (
                "byte for byte"
                if same
                else "as JSON, not byte for byte"
                if equal_json
                else "NOT (the sandbox's page changed after it was copied)"
            )
            + f": {sizes['list']['prism-page']:,} and {sizes['list']['ours']:,} bytes "
            f"(Prism's own example: {sizes['list']['prism']:,} bytes)"
        )

    targets: list[tuple[str, str, bool]] = []

    def ratio_target(op: str, other: str, need: float, label: str) -> None:
        by = summaries.get(op, {})
        if other in by and "ours" in by:
            value = by["ours"].rps / by[other].rps
            noap = by["ours-noap"].rps / by[other].rps if "ours-noap" in by else float("nan")
            short = "" if value >= need else f", {(1 - value / need) * 100:.0f}% short"
            targets.append((label, f"{value:.2f}x ({noap:.2f}x){short}", value >= need))

    ratio_target("retrieve", "prism", 1.5, "retrieve >= 1.5x Prism silent")
    ratio_target("list", "prism", 0.75, "list 30 >= 0.75x Prism (its empty page)")
    ratio_target("list", "prism-page", 2.0, "list 30 >= 2x Prism (the same page)")
    ratio_target("create", "prism", 1.0, "create >= 1x Prism silent")
    ratio_target("update", "prism", 1.0, "update >= 1x Prism silent")
    for op, need in (("retrieve", 2.0), ("list", 1.0)):
        by = summaries.get(op, {})
        if "ours-x2" in by and "prism" in by:
            value = by["ours-x2"].rps / by["prism"].rps
            targets.append(
                (f"{OP_TITLES[op]} at 2 workers >= {need:g}x Prism", f"{value:.2f}x", value >= need)
            )
    for op in ("retrieve", "list"):
        by = summaries.get(op, {})
        if "ours" in by:
            p99, noap = by["ours"].p99, by.get("ours-noap")
            beside = f" ({noap.p99:.1f})" if noap else ""
            targets.append(
                (
                    f"{OP_TITLES[op]} p99 < 10 ms at {args.connections} connections",
                    f"{p99:.1f} ms{beside}",
                    p99 < 10,
                )
            )
    by = summaries.get("retrieve", {})
    if "minimal" in by and "ours" in by:
        share = by["ours"].rps / by["minimal"].rps
        noap_share = by["ours-noap"].rps / by["minimal"].rps if "ours-noap" in by else 0
        targets.append(
            (
                "retrieve >= 35% of minimal ASGI + validation",
                f"{share:.0%} ({noap_share:.0%})",
                share >= 0.35,
            )
        )
    if scaling:
        print(
            f"\nstart-up to the first answer: {restart_startup:.2f} s on the existing "
            f"{args.size:,} file; with the world built and loaded at start-up: "
            f"{ours.startup:.2f} s ({args.size:,}), {big_startup:.2f} s ({args.big:,})"
        )
        print(
            f"resident memory: {rss_small:.0f} MB with {args.size:,} after the runs, "
            f"{rss_big:.0f} MB with {args.big:,} (loaded at start-up)"
        )
        targets.append(
            (
                "start-up < 1 s on an existing file",
                f"{restart_startup:.2f} s",
                restart_startup < 1.0,
            )
        )
        targets.append((f"{args.big:,} world < 300 MB", f"{rss_big:.0f} MB", rss_big < 300))
        for op, runs in scaling.items():
            small, big = Summary.of(runs["small"]), Summary.of(runs["big"])
            change = (big.rps / small.rps - 1) * 100
            print(
                f"{OP_TITLES[op]} with {args.big:,}: {big.rps:,.0f} req/s "
                f"({big.rps_min:,.0f}-{big.rps_max:,.0f}), p99 {big.p99:.1f} ms; with "
                f"{args.size:,} in the same rotation: {small.rps:,.0f} req/s ({change:+.1f}%)"
            )
            targets.append(
                (
                    f"{OP_TITLES[op]} at {args.big:,} within 10% of {args.size:,}",
                    f"{change:+.1f}%",
                    change > -10,
                )
            )
    print("\ntargets (the sandbox as users run it; --no-autopilot in brackets)")
    for label, measured, ok in targets:
        print(f"  {label:<48} {measured:>26}  {'met' if ok else 'MISSED'}")
    print("where the time goes: bench/asgi_cost.py (CPU per request, in the store and the rest)")


if __name__ == "__main__":
    sys.exit(main())

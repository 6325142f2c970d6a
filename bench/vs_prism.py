"""Side-by-side throughput of the sandbox and Stoplight Prism on our spec, driven by wrk.

Run after `make run`'s install (the .venv exists):  .venv/bin/python bench/vs_prism.py
(or `make bench`). Needs wrk (apt-get install wrk) and npm (Prism is installed from the npm
registry into bench/.prism on first use).

1. `vpp-sandbox serve --world load --size 10000` (one worker, a fresh SQLite file, no autopilot)
   and `prism mock openapi/vpp-participations.yaml` on loopback ports; each warmed up, then wrk
   on them in alternation (A B A B) for retrieve, list 30, create and update: requests/s,
   p50/p99 latency, ratio ours/Prism.
2. The sandbox restarted on the same file (start-up to the first answer) next to a second one
   with `--world load --size 100000`, retrieve and list alternated between the two: the cost
   must not grow with the world. Resident memory of both.
3. Each target of issue 6 with the measured value: met or MISSED.

Every load goes to 127.0.0.1 and is bounded by --duration.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "openapi" / "vpp-participations.yaml"
PRISM_DIR = ROOT / "bench" / ".prism"
PRISM_VERSION = "5.16.0"
VENV_BIN = ROOT / ".venv" / "bin"
ACCOUNT = "acc_661677911f2197045e6cf1b1"
TEST_KEY = "sk_test_vppsandbox4f3c9a2b7d1e8f60"

CREATE_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
local n = 0
request = function()
  n = n + 1
  local dev = string.format("dev_%08x%08x%08x", math.random(0, 0x7fffffff),
                            math.random(0, 0x7fffffff), n)
  local body = '{"device_id":"' .. dev .. '","provider_id":"prv_8587fa49c7e5297ccc6c57e5",'
            .. '"programme_id":"vpr_6a1f8e375db9de605baadd46","reference_id":"BENCH' .. n .. '"}'
  return wrk.format(nil, nil, nil, body)
end
"""

# A real write on every call: resubmit SUSPENDED with a new expected time for ACTIVE, which
# replaces the PENDING tail (history stays the same size, so the cost does not drift).
UPDATE_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local ids = {}
for id in string.gmatch(os.getenv("BENCH_IDS"), "[^,]+") do ids[#ids + 1] = id end
local n = 0
request = function()
  n = n + 1
  local id = ids[(n % #ids) + 1]
  local at = os.date("!%Y-%m-%dT%H:%M:%SZ", 1830297600 + n)
  local body = '{"participation_state":[{"state":"SUSPENDED","status":"IN_PROGRESS",'
            .. '"suspension_reasons":["OPERATOR_REQUEST"]},'
            .. '{"state":"ACTIVE","status":"PENDING","expected_at":"' .. at .. '"}]}'
  return wrk.format(nil, "/vpp-participations/" .. id, nil, body)
end
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(
    url: str, method: str = "GET", body: object = None, headers: dict[str, str] | None = None
) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_ready(
    url: str, headers: dict[str, str], server: Server | None = None, timeout: float = 120.0
) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server is not None and server.proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited; see {server.log.name}")
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=1).read()
            return time.perf_counter() - start
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def rss_mb(pid: int) -> float:
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        status = Path(f"/proc/{p}/status")
        if status.exists():
            match = re.search(r"VmRSS:\s+(\d+) kB", status.read_text())
            if match:
                total += int(match.group(1))
    return total / 1024


def parse_wrk(out: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)\b", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    return Result(rps, pct("50"), pct("99"), errors)


def wrk(
    url: str,
    token: str,
    seconds: int,
    connections: int,
    script: str | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
    ]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(
        [*cmd, url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
        timeout=seconds + 30,
    ).stdout
    return parse_wrk(out)


class Server:
    def __init__(self, cmd: list[str], log: Path) -> None:
        self.db: Path | None = None
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def start_sandbox(
    tmp: Path, size: int, db: Path | None = None
) -> tuple[Server, str, float]:
    """`vpp-sandbox serve` on a free port; the time until it answers GET /login.

    Without `db`: a fresh file, the `load` world of `size` participations built and loaded at
    start-up (`--world load --size N`). With `db`: a restart on that file, nothing to load.
    """
    port = free_port()
    cmd = [str(VENV_BIN / "vpp-sandbox"), "serve", "--port", str(port), "--no-autopilot"]
    if db is None:
        db = tmp / f"bench-{size}-{time.monotonic_ns()}.db"
        cmd += ["--world", "load", "--size", str(size), "--seed", "1"]
    basic = base64.b64encode(f"{ACCOUNT}:{TEST_KEY}".encode()).decode()
    started = time.perf_counter()
    server = Server([*cmd, "--db", str(db)], tmp / f"sandbox-{size}.log")
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/login", {"Authorization": f"Basic {basic}"}, server)
    startup = time.perf_counter() - started
    server.db = db
    return server, base, startup


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
        )
    return binary


def body_size(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return len(resp.read())


def token_for(base: str) -> str:
    basic = base64.b64encode(f"{ACCOUNT}:{TEST_KEY}".encode()).decode()
    body = call(f"{base}/login", headers={"Authorization": f"Basic {basic}"})
    return str(body["bearer_token"])  # type: ignore[index]


def suspended_pool(base: str, token: str, count: int) -> list[str]:
    """Participations walked to SUSPENDED through the public API, for the update benchmark."""
    auth = {"Authorization": f"Bearer {token}"}
    path = [
        "AWAITING_CUSTOMER_CONSENT",
        "AWAITING_DEVICE_TELEMETRY",
        "CHECKING_ELIGIBILITY",
        "AWAITING_REGISTRATION",
        "REGISTERED",
        "ACTIVE",
    ]
    ids = []
    for i in range(count):
        created = call(
            f"{base}/vpp-participations",
            "POST",
            {
                "device_id": f"dev_{os.urandom(12).hex()}",
                "provider_id": "prv_8587fa49c7e5297ccc6c57e5",
                "programme_id": "vpr_6a1f8e375db9de605baadd46",
                "reference_id": f"POOL{i}",
            },
            auth,
        )
        pid = str(created["id"])  # type: ignore[index]
        records: list[dict[str, object]] = [{"state": s, "status": "COMPLETE"} for s in path]
        records.append(
            {
                "state": "SUSPENDED",
                "status": "IN_PROGRESS",
                "suspension_reasons": ["OPERATOR_REQUEST"],
            }
        )
        call(f"{base}/vpp-participations/{pid}", "POST", {"participation_state": records}, auth)
        ids.append(pid)
    return ids


def mean_rps(runs: list[Result]) -> float:
    return sum(r.rps for r in runs) / len(runs)


def first_id(base: str, token: str) -> str:
    auth = {"Authorization": f"Bearer {token}"}
    listed = call(f"{base}/vpp-participations?limit=1", headers=auth)
    return str(listed["data"][0]["id"])  # type: ignore[index]


def alternate(
    targets: dict[str, tuple[str, str]],
    paths: dict[str, str],
    args: argparse.Namespace,
    script: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, list[Result]]:
    """Warm every target up, then run wrk on them in turn, A B A B, `args.rounds` times."""
    for name, (url, tok) in targets.items():
        wrk(url + paths[name], tok, args.warmup, args.connections, script, env)
    runs: dict[str, list[Result]] = {name: [] for name in targets}
    for _ in range(args.rounds):
        for name, (url, tok) in targets.items():
            runs[name].append(
                wrk(url + paths[name], tok, args.duration, args.connections, script, env)
            )
    return runs


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="A B alternations per operation")
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--no-prism", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    prism_binary = None if args.no_prism else ensure_prism()

    tmp = Path(tempfile.mkdtemp(prefix="vpp-bench-"))
    scripts = {"create": tmp / "create.lua", "update": tmp / "update.lua"}
    scripts["create"].write_text(CREATE_LUA)
    scripts["update"].write_text(UPDATE_LUA)
    servers: list[Server] = []
    try:
        # -- 1. ours (10,000 world loaded at start-up) against Prism, A B A B ------------------
        ours, base, startup_fresh = start_sandbox(tmp, args.size)
        servers.append(ours)
        token = token_for(base)
        one = first_id(base, token)
        pool = suspended_pool(base, token, 50)
        targets = {"ours": (base, token)}
        if prism_binary is not None:
            prism_port = free_port()
            prism = Server(
                [str(prism_binary), "mock", str(SPEC), "-h", "127.0.0.1", "-p", str(prism_port)],
                tmp / "prism.log",
            )
            servers.append(prism)
            prism_base = f"http://127.0.0.1:{prism_port}"
            wait_ready(
                f"{prism_base}/vpp-participations/{one}", {"Authorization": "Bearer x"}, prism
            )
            targets["prism"] = (prism_base, "x")

        ops = {
            "retrieve": (f"/vpp-participations/{one}", None),
            "list 30": ("/vpp-participations?limit=30", None),
            "create": ("/vpp-participations", "create"),
            "update": (f"/vpp-participations/{pool[0]}", "update"),
        }
        env = {"BENCH_IDS": ",".join(pool)}
        sizes_of: dict[str, dict[str, int]] = {}
        for op in ("retrieve", "list 30"):
            for name, (url, tok) in targets.items():
                sizes_of.setdefault(op, {})[name] = body_size(url + ops[op][0], tok)
        results: dict[str, dict[str, list[Result]]] = {}
        for op, (path, script) in ops.items():
            lua = str(scripts[script]) if script else None
            results[op] = alternate(targets, dict.fromkeys(targets, path), args, lua, env)
        rss_small = rss_mb(ours.proc.pid)
        for server in servers:
            server.stop()
        servers.clear()

        # -- 2. start-up on the existing file; 10,000 against 100,000, A B A B ---------------
        small, small_base, startup_restart = start_sandbox(tmp, args.size, db=ours.db)
        servers.append(small)
        big, big_base, startup_big = start_sandbox(tmp, args.big)
        servers.append(big)
        small_token, big_token = token_for(small_base), token_for(big_base)
        sizes = {"small": (small_base, small_token), "big": (big_base, big_token)}
        by_size: dict[str, dict[str, list[Result]]] = {}
        by_size["retrieve"] = alternate(
            sizes,
            {
                "small": f"/vpp-participations/{first_id(small_base, small_token)}",
                "big": f"/vpp-participations/{first_id(big_base, big_token)}",
            },
            args,
        )
        by_size["list 30"] = alternate(
            sizes, dict.fromkeys(sizes, "/vpp-participations?limit=30"), args
        )
        rss_big = rss_mb(big.proc.pid)

        # -- report -------------------------------------------------------------------------
        print(
            f"\nwrk -t1 -c{args.connections}, {args.rounds} x {args.duration:g} s per server "
            f"and operation after a {args.warmup:g} s warm-up, A B alternation, "
            f"{args.size:,} participations loaded, one uvicorn worker, request and response "
            "validation on\n"
        )
        head = f"{'operation':<10} {'ours req/s':>11} {'p50':>7} {'p99':>7}"
        if "prism" in targets:
            head += f" {'Prism req/s':>12} {'p50':>7} {'p99':>7} {'ours/Prism':>11}"
        print(head + f" {'errors':>7}")
        ratios: dict[str, float] = {}
        p99: dict[str, float] = {}
        for op, by_server in results.items():
            o = by_server["ours"]
            o_rps = mean_rps(o)
            p99[op] = max(r.p99_ms for r in o)
            line = (
                f"{op:<10} {o_rps:>11,.0f} {max(r.p50_ms for r in o):>6.1f}m {p99[op]:>6.1f}m"
            )
            errors = sum(r.errors for r in o)
            if "prism" in by_server:
                p = by_server["prism"]
                p_rps = mean_rps(p)
                ratios[op] = o_rps / p_rps
                line += (
                    f" {p_rps:>12,.0f} {max(r.p50_ms for r in p):>6.1f}m "
                    f"{max(r.p99_ms for r in p):>6.1f}m {ratios[op]:>10.2f}x"
                )
                errors += sum(r.errors for r in p)
            print(line + f" {errors:>7}")
        print("(p50/p99: the worst of the rounds; errors: non-2xx answers and socket errors)")
        for op, by_name in sizes_of.items():
            print(
                f"response body of {op}: "
                + ", ".join(f"{name} {size:,} bytes" for name, size in by_name.items())
            )

        print(
            f"\nstart-up to the first answer: {startup_restart:.2f} s on the existing "
            f"{args.size:,} file; with the world built and loaded at start-up: "
            f"{startup_fresh:.2f} s ({args.size:,}), {startup_big:.2f} s ({args.big:,})"
        )
        print(
            f"resident memory after the runs: {rss_small:.0f} MB with {args.size:,}, "
            f"{rss_big:.0f} MB with {args.big:,} participations (loaded at start-up)"
        )
        change: dict[str, float] = {}
        for op, runs in by_size.items():
            s_rps, b_rps = mean_rps(runs["small"]), mean_rps(runs["big"])
            change[op] = (b_rps / s_rps - 1) * 100
            print(
                f"{op} with {args.big:,}: {b_rps:,.0f} req/s, p99 "
                f"{max(r.p99_ms for r in runs['big']):.1f} ms; with {args.size:,} in the same "
                f"alternation: {s_rps:,.0f} req/s ({change[op]:+.1f}%)"
            )

        print("\ntargets")
        checks: list[tuple[str, str, bool]] = []
        if ratios:
            for op, need in (("retrieve", 2.0), ("list 30", 1.5), ("create", 1.0), ("update", 1.0)):
                checks.append(
                    (f"{op} >= {need:g}x Prism", f"{ratios[op]:.2f}x", ratios[op] >= need)
                )
        for op in ("retrieve", "list 30"):
            checks.append((f"{op} p99 < 10 ms", f"{p99[op]:.1f} ms", p99[op] < 10))
        checks.append(
            ("start-up < 1.5 s", f"{startup_restart:.2f} s", startup_restart < 1.5)
        )
        checks.append((f"{args.big:,} world < 300 MB", f"{rss_big:.0f} MB", rss_big < 300))
        for op, pct in change.items():
            checks.append(
                (f"{op} {args.big:,} within 10% of {args.size:,}", f"{pct:+.1f}%", pct > -10)
            )
        for label, value, ok in checks:
            print(f"  {label:<34} {value:>9}  {verdict(ok)}")
        return 0
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

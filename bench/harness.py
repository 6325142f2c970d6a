"""What the bench scripts share: servers on loopback ports, wrk runs in rotation, medians.

Not a test helper: the scripts in bench/ print figures and assert nothing. Every load goes to
127.0.0.1 and every wrk run is bounded by its duration.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vpp_sandbox.contract_tests.model import HAPPY_PATH

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
ACCOUNT = "acc_661677911f2197045e6cf1b1"
TEST_KEY = "sk_test_vppsandbox4f3c9a2b7d1e8f60"
PROVIDER = "prv_8587fa49c7e5297ccc6c57e5"
PROGRAMME = "vpr_6a1f8e375db9de605baadd46"

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


# -- wrk --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def parse_wrk(out: str) -> Result:
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")

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
    return Result(float(found.group(1)), pct("50"), pct("99"), errors)


def wrk(
    url: str,
    token: str | None,
    seconds: float,
    connections: int,
    script: Path | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    """`wrk -t1 -cN -dS --latency` on one URL (loopback only), bounded by `seconds`."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"loads go to 127.0.0.1 only, not {url}")
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run(
        [*cmd, url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
        timeout=seconds + 30,
    ).stdout
    return parse_wrk(out)


@dataclass
class Target:
    """One server answering one operation: where to send wrk, and how."""

    label: str
    url: str
    token: str | None = None
    script: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def rotate(
    targets: Sequence[Target],
    *,
    rounds: int,
    seconds: float,
    warmup: float,
    connections: int,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, list[Result]]:
    """Warm each target up, then wrk them in turn (A B C A B C ...), `rounds` times.

    The starting target moves by one each round, so no server always runs first (or right
    after the same neighbour) while the machine warms up or cools down.
    """
    for t in targets:
        if warmup > 0:
            wrk(t.url, t.token, warmup, connections, t.script, t.env)
    runs: dict[str, list[Result]] = {t.label: [] for t in targets}
    for r in range(rounds):
        order = [*targets[r % len(targets) :], *targets[: r % len(targets)]]
        for t in order:
            result = wrk(t.url, t.token, seconds, connections, t.script, t.env)
            runs[t.label].append(result)
            progress(f"  round {r + 1}/{rounds} {t.label}: {result.rps:,.0f} req/s")
    return runs


@dataclass(frozen=True)
class Summary:
    """The median of the rounds and their spread (min-max)."""

    rps: float
    rps_min: float
    rps_max: float
    p99: float
    p99_max: float
    errors: int

    @classmethod
    def of(cls, runs: Sequence[Result]) -> Summary:
        rates = [r.rps for r in runs]
        p99s = [r.p99_ms for r in runs]
        return cls(
            statistics.median(rates),
            min(rates),
            max(rates),
            statistics.median(p99s),
            max(p99s),
            sum(r.errors for r in runs),
        )


# -- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A process in its own session (stopped with its children), output to a log file."""

    def __init__(
        self, cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        self.log_path = log
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def wait_ready(
    url: str, headers: dict[str, str], server: Server | None = None, timeout: float = 180.0
) -> float:
    """Seconds until `url` answers 2xx (the server's exit or a timeout is fatal)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server is not None and server.proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited; see {server.log_path}")
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=1).read()
            return time.perf_counter() - start
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its direct children, in MB."""
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


def fetch(url: str, token: str | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        body: bytes = r.read()
        return body


def call(
    url: str, method: str = "GET", body: object = None, headers: dict[str, str] | None = None
) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def basic_auth() -> dict[str, str]:
    basic = base64.b64encode(f"{ACCOUNT}:{TEST_KEY}".encode()).decode()
    return {"Authorization": f"Basic {basic}"}


def token_for(base: str) -> str:
    body = call(f"{base}/login", headers=basic_auth())
    return str(body["bearer_token"])  # type: ignore[index]


@dataclass
class Sandbox:
    """A running `vpp-sandbox serve`, its base URL, a bearer token and its data file."""

    server: Server
    base: str
    token: str
    db: Path
    startup: float

    def first_id(self) -> str:
        listed = call(
            f"{self.base}/vpp-participations?limit=1",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        return str(listed["data"][0]["id"])  # type: ignore[index]


def start_sandbox(
    tmp: Path,
    name: str,
    *,
    size: int,
    seed: int = 1,
    db: Path | None = None,
    autopilot: bool = True,
    source: Path | None = None,
    workers: int = 1,
    database: str | None = None,
) -> Sandbox:
    """`python -m vpp_sandbox serve` on a free port, as a user runs it (default settings).

    Without `db`: a new file (or the empty `database`, a PostgreSQL URL) with the `load` world
    of `size` participations built and loaded at start-up. With `db`: a restart on that file.
    `autopilot=False` adds --no-autopilot. `source` runs another checkout of the code (its
    directory goes first on PYTHONPATH).
    """
    port = free_port()
    cmd = [str(VENV_PYTHON), "-m", "vpp_sandbox", "serve", "--port", str(port)]
    if not autopilot:
        cmd.append("--no-autopilot")
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if db is None:
        db = tmp / f"{name}-{size}-{time.monotonic_ns()}.db"
        cmd += ["--world", "load", "--size", str(size), "--seed", str(seed)]
    where = str(db) if database is None else database
    # `python -m` puts the working directory first on sys.path: run from the checkout.
    env = {"PYTHONPATH": str(source)} if source is not None else None
    started = time.perf_counter()
    server = Server([*cmd, "--db", where], tmp / f"{name}.log", env, cwd=source or ROOT)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/login", basic_auth(), server)
    startup = time.perf_counter() - started
    return Sandbox(server, base, token_for(base), db, startup)


# The update benchmark's participations: made, walked to ACTIVE, then SUSPENDED.
SUSPEND_RECORDS: list[dict[str, object]] = [
    {"state": state, "status": "COMPLETE"} for state in HAPPY_PATH[1:]
]
SUSPEND_RECORDS.append(
    {"state": "SUSPENDED", "status": "IN_PROGRESS", "suspension_reasons": ["OPERATOR_REQUEST"]}
)


def pool_body(tag: str, i: int) -> dict[str, str]:
    """The create body of the `i`th participation of an update pool: a device of its own."""
    return {
        "device_id": f"dev_{os.urandom(12).hex()}",
        "provider_id": PROVIDER,
        "programme_id": PROGRAMME,
        "reference_id": f"{tag}{i}",
    }


def suspended_pool(base: str, token: str, count: int, tag: str = "POOL") -> list[str]:
    """Participations walked to SUSPENDED through the public API, for the update benchmark."""
    auth = {"Authorization": f"Bearer {token}"}
    ids = []
    for i in range(count):
        created = call(f"{base}/vpp-participations", "POST", pool_body(tag, i), auth)
        pid = str(created["id"])  # type: ignore[index]
        call(
            f"{base}/vpp-participations/{pid}",
            "POST",
            {"participation_state": SUSPEND_RECORDS},
            auth,
        )
        ids.append(pid)
    return ids


# Where the package's folders are in a tree of the src/ layout (pyproject's package-dir).
PACKAGE_DIRS = {
    "": "src/vpp_sandbox",
    "mock_server": "mock_server",
    "contract_tests": "contract_tests",
    "fixtures": "fixtures",
    "openapi": "openapi",
}


def export(rev: str, into: Path) -> Path:
    """The tree of `rev` (as committed) in `into`, and the directory to put on PYTHONPATH so
    that `vpp_sandbox` is that revision's: the tree itself for the first layouts (links under
    vpp_sandbox/), a package assembled from its folders (copies) for the src/ layout."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", rev], cwd=ROOT, check=True, capture_output=True, timeout=60
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    if not (into / "src" / "vpp_sandbox").is_dir():
        return into
    package = into / ".package"
    for inside, folder in PACKAGE_DIRS.items():
        shutil.copytree(into / folder, package / "vpp_sandbox" / inside, dirs_exist_ok=True)
    return package


def write_scripts(tmp: Path) -> dict[str, Path]:
    """The wrk Lua scripts of create and update, written into `tmp`."""
    scripts = {"create": tmp / "create.lua", "update": tmp / "update.lua"}
    scripts["create"].write_text(CREATE_LUA)
    scripts["update"].write_text(UPDATE_LUA)
    return scripts

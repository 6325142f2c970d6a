"""Print how `vpp-sandbox proxy` holds up against hostile clients and a hostile upstream.

    .venv/bin/python bench/proxy_hostile.py [--slowloris 200] [--seconds 15] [--tree DIR]

Starts tests/hostile_upstream.py's server in this process and, for each case, a fresh
`vpp-sandbox proxy --upstream ...` with its default settings in front of it (so each memory
peak is the case's own), then prints what happened:

- slowloris: `--slowloris` sockets send a request line, then one header line a second; how
  many the proxy still holds open after `--seconds`;
- an endless header streamed up to 128 MB: how much the proxy took before it cut it off;
- a slow body (Content-Length 100, a byte every half second): what the client got, and when;
- a gzip answer of 1 MiB that inflates to 1 GiB: what the client got;
- three tenants get a 10 MB page each at once while a fourth asks for small pages on one
  kept-alive connection: the fourth's worst wait and how many answers it got meanwhile;
- an upstream status 999: what the client got;
- a client that hangs up mid-body: whether anything reached the upstream;
- a tenant's request behind 20 requests with forged tokens (its claims, another key) that the
  upstream holds for 3 s and then refuses: how long the tenant waited;

each with the proxy's peak RSS (VmHWM). `--tree DIR` runs the proxy from another checkout (e.g.
`git archive main | tar -x -C /tmp/before`). Figures only, no asserts; loopback only, every case
bounded in time and size.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jwt
import requests
from harness import ROOT, Server, free_port, wait_ready

from tests.hostile_upstream import ACCOUNT_ID, Upstream, big, bomb, hostile_upstream

VPP = "/vpp-participations"


def peak_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


def importable(tree: Path, into: Path) -> Path:
    """The package `vpp_sandbox` of a checkout, laid out as pyproject.toml maps it (src/ and
    the top-level folders), in `into`: what PYTHONPATH needs to run that checkout's code."""
    package = into / "vpp_sandbox"
    shutil.copytree(tree / "src" / "vpp_sandbox", package)
    for folder in ("mock_server", "contract_tests", "fixtures", "openapi"):
        shutil.copytree(tree / folder, package / folder)
    return into


@contextlib.contextmanager
def proxy(path: Path | None, upstream: Upstream, logs: Path) -> Iterator[tuple[str, int]]:
    """A fresh `vpp-sandbox proxy`, from `path` (None: the installed one): its URL and pid."""
    port = free_port()
    command = [sys.executable, "-m", "vpp_sandbox.cli", "proxy", "--upstream",
               upstream.base_url, "--port", str(port)]  # fmt: skip
    env = {"PYTHONPATH": str(path)} if path else None
    server = Server(command, logs / f"proxy-{port}.log", env, cwd=path or ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/openapi.json", {}, server, timeout=30)
        yield base, server.proc.pid
    finally:
        server.stop()


def connect(base: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=5)


def token(account: str, key: str = "the upstream's signing key, 32 bytes or more") -> str:
    claims = {"account_id": account, "live_mode": False, "exp": int(time.time()) + 600}
    return jwt.encode(claims, key, algorithm="HS256")


def status_of(raw: bytes) -> str:
    if not raw:
        return "no answer"
    line = raw.split(b"\r\n", 1)[0].decode("latin-1")
    return " ".join(line.split()[1:2]) or line


# -- the cases: each returns what it saw, in words ------------------------------------------------


def slowloris(base: str, _: Upstream, args: argparse.Namespace) -> str:
    held = []
    for _n in range(args.slowloris):
        with contextlib.suppress(OSError):
            s = connect(base)
            s.sendall(b"GET /vpp-participations HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.setblocking(False)
            held.append(s)
    end = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        for s in held:
            with contextlib.suppress(OSError):
                s.send(f"X-Slow-{n}: {n}\r\n".encode())
        time.sleep(1.0)
    still = 0
    for s in held:
        try:
            while s.recv(65536):
                pass
        except BlockingIOError:
            still += 1
        except OSError:
            pass
        s.close()
    return f"{still} of {len(held)} still open after {args.seconds:g} s"


def endless_header(base: str, _: Upstream, args: argparse.Namespace) -> str:
    sent, chunk = 0, b"a" * 65536
    s = connect(base)
    answer = b""
    try:
        s.sendall(b"GET /vpp-participations HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        while sent < 128 * 1024 * 1024:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        with contextlib.suppress(OSError):
            answer = s.recv(65536)
    s.close()
    if sent >= 128 * 1024 * 1024:
        return f"all {sent / 2**20:.0f} MB taken, {status_of(answer)}"
    return f"cut off after {sent / 2**20:.1f} MB (kernel buffers included), {status_of(answer)}"


def slow_body(base: str, upstream: Upstream, args: argparse.Namespace) -> str:
    s = connect(base)
    s.sendall(b"POST /vpp-participations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100\r\nX-Marker: slow\r\n\r\n")  # fmt: skip
    s.setblocking(False)
    started, answer = time.monotonic(), b""
    while time.monotonic() - started < args.seconds:
        try:
            data = s.recv(65536)
            if not data:
                break
            answer += data
            break
        except BlockingIOError:
            pass
        except OSError:
            break
        with contextlib.suppress(OSError):
            s.send(b" ")
        time.sleep(0.5)
    took = time.monotonic() - started
    s.close()
    reached = sum(1 for r in upstream.received if r.headers.get("x-marker") == "slow")
    if not answer:
        return f"no answer after {took:.0f} s; forwarded {reached}"
    return f"{status_of(answer)} after {took:.1f} s; forwarded {reached}"


def gzip_bomb(base: str, _: Upstream, args: argparse.Namespace) -> str:
    r = requests.get(f"{base}{VPP}", headers={"X-Answer": "bomb 1024"}, timeout=120,
                     stream=True)  # fmt: skip
    got = f"{r.status_code} ({len(r.raw.read(decode_content=False))} bytes)"
    r.close()
    return f"client got {got}"


def large_pages(base: str, _: Upstream, args: argparse.Namespace) -> str:
    url = f"{base}{VPP}"

    def large(n: int) -> None:
        requests.get(url, timeout=120, headers={
            "Authorization": f"Bearer {token(f'acc_{n:024x}')}", "X-Answer": "big 10"})

    threads = [threading.Thread(target=large, args=(n,)) for n in range(3)]
    waits = []
    with requests.Session() as session:
        headers = {"Authorization": f"Bearer {token('acc_' + '9' * 24)}"}
        session.get(url, headers=headers, timeout=30)
        began = time.monotonic()
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            started = time.monotonic()
            session.get(url, headers=headers, timeout=60)
            waits.append(time.monotonic() - started)
        took = time.monotonic() - began
    return (f"3 pages of 10 MB in {took:.1f} s; the fourth tenant got {len(waits)} answers "
            f"meanwhile, worst wait {max(waits):.2f} s")  # fmt: skip


def status_999(base: str, _: Upstream, args: argparse.Namespace) -> str:
    try:
        r = requests.get(f"{base}{VPP}", headers={"X-Answer": "status 999"}, timeout=30)
    except requests.ConnectionError as exc:
        return f"connection dropped ({type(exc).__name__})"
    return f"{r.status_code} {r.json().get('code', '') if r.content[:1] == b'{' else ''}"


def hang_up_mid_body(base: str, upstream: Upstream, args: argparse.Namespace) -> str:
    s = connect(base)
    s.sendall(b"POST /vpp-participations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
              b"\r\nContent-Length: 100\r\nX-Marker: partial\r\n\r\n" + b'{"device_id": "dev_')
    s.close()
    # What the proxy does with it happens at once; anything it forwards arrives within this.
    time.sleep(2)
    reached = [r for r in upstream.received if r.headers.get("x-marker") == "partial"]
    if not reached:
        return "nothing forwarded"
    return f"forwarded {len(reached)} request(s), {len(reached[0].body)} of 100 body bytes"


def forged_tokens(base: str, upstream: Upstream, args: argparse.Namespace) -> str:
    url = f"{base}{VPP}"
    forged = token(ACCOUNT_ID, "a forger's key, at least 32 bytes long")
    upstream.released.clear()
    threading.Timer(3.0, upstream.release).start()
    flood = [threading.Thread(target=lambda: requests.get(url, timeout=60, headers={
        "Authorization": f"Bearer {forged}", "X-Answer": "hold 401"})) for _ in range(20)]
    for thread in flood:
        thread.start()
    while upstream.holding < 1:
        time.sleep(0.01)
    started = time.monotonic()
    r = requests.get(url, headers={"Authorization": f"Bearer {token(ACCOUNT_ID)}"}, timeout=60)
    waited = time.monotonic() - started
    for thread in flood:
        thread.join()
    return f"the tenant waited {waited:.2f} s for its {r.status_code}"


CASES: list[tuple[str, Callable[[str, Upstream, argparse.Namespace], str]]] = [
    ("slowloris", slowloris),
    ("endless header", endless_header),
    ("slow body", slow_body),
    ("gzip bomb 1 MiB -> 1 GiB", gzip_bomb),
    ("10 MB pages", large_pages),
    ("status 999", status_999),
    ("hang-up mid-body", hang_up_mid_body),
    ("forged tokens", forged_tokens),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--slowloris", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--tree", type=Path, default=ROOT)
    args = parser.parse_args()
    bomb(1024), big(10)  # made once, before any timing
    print(f"vpp-sandbox proxy from {args.tree}, default settings")
    with tempfile.TemporaryDirectory() as scratch, hostile_upstream() as upstream:
        path = None if args.tree == ROOT else importable(args.tree, Path(scratch) / "tree")
        for name, case in CASES:
            with proxy(path, upstream, Path(scratch)) as (base, pid):
                before = peak_mb(pid)
                seen = case(base, upstream, args)
                peak = peak_mb(pid)
            print(f"{name:<26} {seen}  [proxy peak RSS {before} -> {peak} MB]", flush=True)
            upstream.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())

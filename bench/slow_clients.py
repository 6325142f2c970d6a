"""Print how `vpp-sandbox serve` holds up under slow and hostile clients (figures, no asserts).

    .venv/bin/python bench/slow_clients.py [--slowloris 250] [--streamers 16] [--stream-mb 16]
        [--seconds 15] [--http auto|httptools|h11] [--tree DIR] [--no-limit-flags]
        [-- extra serve flags]

Starts `vpp-sandbox serve --db :memory:` on a free loopback port, measures a normal client
(GET /vpp-participations?limit=30 on one kept-alive connection, one request after the other)
and the server's RSS, then for `--seconds`:

- `--slowloris` sockets each send a request line, then one more header line every second,
  never finishing the head (the classic slowloris);
- `--streamers` sockets each send an endless header value, up to `--stream-mb` MB each;

while the normal client keeps going. It prints the normal client's p50/p99 and errors before
and during the attack, the server's RSS before, at its peak and after, and how many attack
sockets the server still held open at the end.

`--tree DIR` runs the server from another checkout (e.g. `git archive 9e7b131 | tar -x -C
/tmp/before`), `--no-limit-flags` for a tree whose `serve` has no limit flags. Loopback only,
bounded in time and size.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = ("acc_661677911f2197045e6cf1b1", "sk_test_vppsandbox4f3c9a2b7d1e8f60")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(times: list[float]) -> str:
    if not times:
        return "no answers"
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(0.99 * (len(times) - 1)))]
    return f"p50 {statistics.median(times):7.2f} ms   p99 {p99:7.2f} ms   n={len(times)}"


class NormalClient:
    """One kept-alive connection, requests one after the other, latencies in ms."""

    def __init__(self, base: str, token: str) -> None:
        self.session = requests.Session()
        self.url = f"{base}/vpp-participations?limit=30"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.times: list[float] = []
        self.errors = 0

    def run_for(self, seconds: float, stop: threading.Event | None = None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (stop and stop.is_set()):
            started = time.perf_counter()
            try:
                r = self.session.get(self.url, headers=self.headers, timeout=10)
                ok = r.status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                self.times.append((time.perf_counter() - started) * 1000)
            else:
                self.errors += 1


def slowloris(port: int, count: int, stop: threading.Event, held: list[socket.socket]) -> None:
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.setblocking(False)
            held.append(s)
        except OSError:
            pass
    n = 0
    while not stop.wait(1.0):
        n += 1
        for s in held:
            with contextlib.suppress(OSError):  # closed by the server: the point
                s.send(f"X-Slow-{n}: {n}\r\n".encode())


def streamer(port: int, megabytes: int, stop: threading.Event, sent: list[int]) -> None:
    total = 0
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        chunk = b"a" * 65536
        while total < megabytes * 1024 * 1024 and not stop.is_set():
            s.sendall(chunk)
            total += len(chunk)
        s.close()
    except OSError:
        pass  # refused by the server: the point
    sent.append(total)


def still_open(sockets: list[socket.socket]) -> int:
    """Sockets the server has not closed: a read would block rather than see EOF or a reset."""
    open_ = 0
    for s in sockets:
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break  # EOF: closed by the server (after its answer, if any)
        except BlockingIOError:
            open_ += 1
        except OSError:
            pass
    return open_


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--slowloris", type=int, default=250)
    parser.add_argument("--streamers", type=int, default=16)
    parser.add_argument("--stream-mb", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--http", default=None)
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--no-limit-flags", action="store_true")
    parser.add_argument("extra", nargs="*", help="more `serve` flags, after --")
    args = parser.parse_args()

    port = free_port()
    command = [sys.executable, "-m", "vpp_sandbox.cli", "serve", "--db", ":memory:"]
    command += ["--port", str(port)]
    if args.http and not args.no_limit_flags:
        command += ["--http", args.http]
    command += args.extra
    env = {**os.environ, "PYTHONPATH": str(args.tree)}
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed with the process below
    server = subprocess.Popen(command, cwd=args.tree, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/login", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print("the server did not start", file=sys.stderr)
                    return 2
                time.sleep(0.1)
        r = requests.get(f"{base}/login", auth=ACCOUNT, timeout=5)
        token = r.json()["bearer_token"]
        for i in range(30):
            requests.post(
                f"{base}/vpp-participations",
                json={
                    "device_id": f"dev_{i:024x}",
                    "provider_id": "prv_" + "1" * 24,
                    "programme_id": "vpr_" + "2" * 24,
                },
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )

        NormalClient(base, token).run_for(2.0)  # warm-up
        quiet = NormalClient(base, token)
        quiet.run_for(5.0)
        rss_before = rss_mb(server.pid)

        stop = threading.Event()
        held: list[socket.socket] = []
        sent: list[int] = []
        threads = [threading.Thread(target=slowloris, args=(port, args.slowloris, stop, held))]
        threads += [
            threading.Thread(target=streamer, args=(port, args.stream_mb, stop, sent))
            for _ in range(args.streamers)
        ]
        peak = rss_before
        attacked = NormalClient(base, token)
        client = threading.Thread(target=attacked.run_for, args=(args.seconds, stop))
        started = time.monotonic()
        for t in threads:
            t.start()
        client.start()
        while time.monotonic() - started < args.seconds:
            peak = max(peak, rss_mb(server.pid))
            time.sleep(0.25)
        open_at_end = still_open(held)
        stop.set()
        client.join()
        for t in threads:
            t.join(timeout=30)
        for s in held:
            s.close()
        time.sleep(2.0)
        rss_after = rss_mb(server.pid)

        print(f"server: {' '.join(command[2:])}  (tree {args.tree})")
        print(
            f"attack: {args.slowloris} slowloris sockets, {args.streamers} streamers of "
            f"{args.stream_mb} MB, {args.seconds:g} s"
        )
        print(f"{'normal client, quiet':<34} {percentiles(quiet.times)}   errors {quiet.errors}")
        print(
            f"{'normal client, under attack':<34} {percentiles(attacked.times)}   "
            f"errors {attacked.errors}"
        )
        print(
            f"{'RSS before / peak / after':<34} {rss_before:.0f} / {peak:.0f} / {rss_after:.0f} MB"
        )
        print(
            f"{'streamers sent before cut off':<34} "
            f"{sum(sent) / 1024 / 1024:.1f} MB in all, at most "
            f"{max(sent, default=0) / 1024:.0f} KB on one socket (kernel buffers included)"
        )
        print(f"{'slowloris sockets open at the end':<34} {open_at_end} of {len(held)}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the real `vpp-sandbox serve` command on a free loopback port, for the few tests that must."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    base_url: str
    process: subprocess.Popen[bytes]
    output: str = ""  # what the server printed, filled in when it has stopped


@contextmanager
def served(*args: str, cwd: Path = ROOT, port_via_env: bool = False) -> Iterator[Served]:
    """`vpp-sandbox serve ARGS` until the block ends; it has answered a request when we yield.

    The port goes in `--port`, or in `VPP_PORT` with `port_via_env`.
    """
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "vpp_sandbox.cli", "serve", *args]
    if port_via_env:
        env["VPP_PORT"] = str(port)
    else:
        command += ["--port", str(port)]
    with running(command, port, "/login", cwd=cwd, env=env) as server:
        yield server


@contextmanager
def running(
    command: list[str],
    port: int,
    probe: str,
    *,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    stop_timeout: float = 10,
) -> Iterator[Served]:
    """A server `command` listening on `port` until the block ends (then SIGTERM); it has
    answered `probe` when we yield, and `output` holds what it printed once it has stopped.
    Output goes to a file, not a pipe, so a chatty server can never block on a full pipe.
    """
    name = f"vpp-sandbox {command[3]}"  # [python, -m, vpp_sandbox.cli, SUBCOMMAND, ...]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Served(f"http://127.0.0.1:{port}", proc)
        try:
            # Waited for as a condition: on a busy machine the first answer may be slow (a
            # worker still starting), which is a reason to ask again, not a failure.
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(server.base_url + probe, timeout=5).close()
                    break
                except (requests.ConnectionError, requests.Timeout):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        pytest.fail(f"{name} did not start: {log.read()[-2000:]!r}")
                    time.sleep(0.1)
            yield server
        finally:
            proc.terminate()  # uvicorn shuts down gracefully on SIGTERM
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.seek(0)
            server.output = log.read().decode(errors="replace")

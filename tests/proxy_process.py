"""Run the real `vpp-sandbox proxy` command on a free loopback port, for the tests that must."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.serve_process import ROOT, Served, free_port


@contextmanager
def proxied(upstream: str, *args: str) -> Iterator[Served]:
    """`vpp-sandbox proxy --upstream UPSTREAM ARGS` until the block ends (then SIGTERM).

    `output` holds what it printed, the summary at exit included, once the block has ended.
    """
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "vpp_sandbox.cli", "proxy", "--upstream", upstream,
        "--port", str(port), *args,
    ]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        running = Served(f"http://127.0.0.1:{port}", proc)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(running.base_url + "/openapi.json", timeout=1).close()
                    break
                except requests.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        pytest.fail(f"vpp-sandbox proxy did not start: {log.read()[-2000:]!r}")
                    time.sleep(0.1)
            yield running
        finally:
            proc.terminate()  # uvicorn shuts down gracefully on SIGTERM: the summary is printed
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.seek(0)
            running.output = log.read().decode(errors="replace")

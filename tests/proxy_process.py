"""Run the real `vpp-sandbox proxy` command on a free loopback port, for the tests that must."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tests.serve_process import ROOT, Served, free_port, running


@contextmanager
def proxied(upstream: str, *args: str) -> Iterator[Served]:
    """`vpp-sandbox proxy --upstream UPSTREAM ARGS` until the block ends (then SIGTERM).

    `output` holds what it printed, the summary at exit included, once the block has ended.
    """
    port = free_port()
    command = [
        sys.executable, "-m", "vpp_sandbox.cli", "proxy", "--upstream", upstream,
        "--port", str(port), *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The proxy prints its summary when uvicorn shuts down on SIGTERM: give it the time.
    with running(command, port, "/openapi.json", env=env, stop_timeout=20) as server:
        yield server

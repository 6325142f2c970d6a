"""Sandboxes the pytest plugin starts: one per set of server options, or one for all workers.

Each is a `vpp-sandbox serve` process on a free port with a throw-away store and a fresh admin
key, its output in a log file the failing tests' reports point to.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import requests

from vpp_sandbox.client import SandboxServer

__all__ = ["Launcher", "start", "stop_shared"]

START_TIMEOUT = 60.0
SHARED_FILE = "vpp-sandbox-shared.json"
# The shared sandbox's process, kept referenced for this process's life: the controller stops
# it (`stop_shared`), and a collected Popen of a live child would warn.
_KEPT: list[subprocess.Popen[bytes]] = []


@dataclass
class Started:
    server: SandboxServer
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], log: Path) -> str | None:
    """None once the server answers; else why it did not start (its output)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return log.read_text(errors="replace")[-3000:]
        try:
            requests.get(base_url + "/_sandbox/openapi.json", timeout=2).close()
            return None
        except requests.ConnectionError:
            time.sleep(0.05)
    return f"no answer in {START_TIMEOUT:.0f} s: " + log.read_text(errors="replace")[-3000:]


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start(folder: Path, extra_args: Sequence[str]) -> Started:
    """`vpp-sandbox serve` on a free port with a store in `folder`, once it answers."""
    # A fresh admin key of its own: nothing else on the machine makes or deletes accounts on
    # it, and a VPP_ADMIN_KEY of the caller's environment cannot get in the way.
    admin_key = secrets.token_hex(16)
    env = {**os.environ, "VPP_ADMIN_KEY": admin_key}
    failures = []
    for attempt in range(3):  # a free port may be taken before the server binds it
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}"
        log = folder / f"serve-{attempt}.log"
        command = [
            sys.executable, "-m", "vpp_sandbox", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--db", str(folder / "sandbox.db"), *extra_args,
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        why = _wait_until_up(base_url, process, log)
        if why is None:
            return Started(SandboxServer(base_url, admin_key, str(log)), process)
        _stop(process)
        failures.append(why)
        if "address already in use" not in why.lower():
            break
    raise RuntimeError(f"vpp-sandbox serve did not start ({' '.join(command)}):\n{failures[-1]}")


@dataclass
class Launcher:
    """The sandboxes of one pytest process, started on first use, one per set of options."""

    folder: Path
    started: dict[tuple[str, ...], Started] = field(default_factory=dict)

    def get(self, args: Sequence[str]) -> SandboxServer:
        key = tuple(args)
        if key not in self.started:
            where = self.folder / f"sandbox-{len(self.started)}"
            where.mkdir(parents=True, exist_ok=True)
            self.started[key] = start(where, key)
        return self.started[key].server

    def shared(self, root: Path) -> SandboxServer:
        """The one sandbox of every xdist worker under `root`: the first to ask starts it.

        Its process outlives the worker that started it; the controller stops it at the end
        of the session (`stop_shared`).
        """
        from filelock import FileLock

        info = root / SHARED_FILE
        with FileLock(str(info) + ".lock"):
            if info.is_file():
                data = json.loads(info.read_text())
                return SandboxServer(data["base_url"], data["admin_key"], data["log"])
            where = root / "vpp-sandbox-shared"
            where.mkdir(parents=True, exist_ok=True)
            made = start(where, ())
            _KEPT.append(made.process)
            info.write_text(
                json.dumps(
                    {
                        "base_url": made.server.base_url,
                        "admin_key": made.server.admin_key,
                        "log": made.server.log,
                        "pid": made.process.pid,
                    }
                )
            )
            return made.server

    def close(self) -> None:
        for started in self.started.values():
            _stop(started.process)
        self.started.clear()


def stop_shared(root: Path) -> None:
    """Stop the workers' shared sandbox under `root`, if one was started."""
    info = root / SHARED_FILE
    if not info.is_file():
        return
    pid = int(json.loads(info.read_text())["pid"])
    info.unlink()
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)

"""A real PostgreSQL server for the tests: the machine's binaries, a throw-away data directory
and a free loopback port. No mocks of the database.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user. Without
the binaries the tests that need it are skipped with the reason (or fail, when
`VPP_REQUIRE_POSTGRES=1`, as CI sets it: a machine without them must not pass quietly).
`bench/workers.py` starts its server with the same function.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "start_postgres"]


class PostgresUnavailable(Exception):
    """No PostgreSQL binaries on this machine, or the server would not start (the reason)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@dataclass
class PostgresServer:
    """One running server; `database()` makes a fresh, empty database on it."""

    bindir: Path
    root: Path
    port: int
    options: str = ""
    made: list[str] = field(default_factory=list)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def database(self) -> str:
        import psycopg

        name = "vpp_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        self.made.append(name)
        return self.url(name)

    def pause(self) -> None:
        """Stop the server, keeping its data (every connection to it is cut)."""
        subprocess.run(
            _as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                       "-w", "stop"]),
            check=True, capture_output=True, timeout=60,
        )

    def resume(self) -> None:
        """Start the paused server again, on the same port."""
        _pg_start(self.bindir, self.root, self.options)

    def stop(self) -> None:
        subprocess.run(
            _as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                       "-w", "stop"]),
            check=False, capture_output=True, timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """Start a server (initdb + pg_ctl start), or raise PostgresUnavailable with the reason."""
    bindir = _bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL binaries not found (Debian: apt-get install postgresql)"
        )
    root = Path(tempfile.mkdtemp(prefix="vpp-pg-"))
    os.chmod(root, 0o777)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = root / "data"
    port = free_port()
    subprocess.run(
        _as_owner([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                   "--no-sync", "-E", "UTF8", "--locale=C"]),
        check=True, capture_output=True, timeout=120,
    )
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    _pg_start(bindir, root, options)
    return PostgresServer(bindir, root, port, options)


def _pg_start(bindir: Path, root: Path, options: str) -> None:
    started = subprocess.run(
        _as_owner([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-o", options, "-l",
                   str(root / "server.log"), "-w", "-t", "60", "start"]),
        capture_output=True, timeout=120, check=False,
    )
    if started.returncode != 0:
        log = (root / "server.log").read_text(errors="replace")[-2000:]
        raise PostgresUnavailable(f"PostgreSQL did not start: {started.stderr!r} {log}")

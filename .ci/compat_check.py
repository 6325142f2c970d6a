"""The connection limits on the uvicorn installed: `python .ci/compat_check.py` (any venv).

`mock_server/compat.py` is the one place that builds on uvicorn below its documented surface.
The wheel check runs this with the newest uvicorn, h11 and httptools within our ranges, so an
upgrade that breaks it is found here, not by a user: `compat.check()` must pass, and a real
`vpp-sandbox serve` on each parser must still close a slow head (408), cut an endless one
(431), answer garbage in the error format (400), refuse a connection past the cap (503) and
serve an ordinary request. Standard library and the package only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ACCOUNT = ("acc_661677911f2197045e6cf1b1", "sk_test_vppsandbox4f3c9a2b7d1e8f60")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, object]]:
    """(status, error body) of the one answer on `sock`, read until the server closes."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed while we were still sending: what came is all
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.startswith(b"{") else {}


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def check_server(python: str, http: str) -> None:
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "serve.log"
    command = [
        python, "-m", "vpp_sandbox", "serve", "--db", ":memory:", "--port", str(port),
        "--http", http, "--header-timeout", "1", "--idle-timeout", "2",
        "--max-header-bytes", "4000", "--max-connections", "3",
    ]  # fmt: skip
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with connect(port) as sock:
                    sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")  # fmt: skip
                    if answer(sock)[0] == 200:
                        break
            except OSError as exc:
                if time.monotonic() > deadline or server.poll() is not None:
                    failed = f"{http}: the server did not start:\n{log.read_text()}"
                    raise SystemExit(failed) from exc
                time.sleep(0.2)
        with connect(port) as sock:  # a head that never ends in time
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
            status, body = answer(sock)
            assert (status, body.get("code")) == (408, "request_timeout"), (http, status, body)
        with connect(port) as sock:  # a head that never ends in size
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
            for _ in range(5):  # 5.5 KB, a little at a time: past the limit, then wait
                sock.sendall(b"".join(b"X-Filler: " + b"a" * 100 + b"\r\n" for _ in range(10)))
                time.sleep(0.05)
            status, body = answer(sock)
            assert (status, body.get("code")) == (431, "request_header_too_large"), (http, status)
        with connect(port) as sock:  # not HTTP at all
            sock.sendall(b"\x16\x03\x01 hello, not http\r\n\r\n")
            status, body = answer(sock)
            assert (status, body.get("code")) == (400, "request_malformed"), (http, status, body)
        held = [connect(port) for _ in range(3)]  # the cap: the fourth is refused
        try:
            time.sleep(0.3)
            with connect(port) as sock:
                status, body = answer(sock)
                assert (status, body.get("code")) == (503, "server_busy"), (http, status, body)
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        with connect(port) as sock:  # and it still serves
            import base64

            basic = base64.b64encode(f"{ACCOUNT[0]}:{ACCOUNT[1]}".encode()).decode()
            sock.sendall(
                f"GET /login HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            status, _ = answer(sock)
            assert status == 200, (http, status)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> int:
    from vpp_sandbox.mock_server import compat

    versions = {name: metadata.version(name) for name in ("uvicorn", "h11", "httptools")}
    print("compat check on " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    for http in ("httptools", "h11"):
        assert compat.check(http) == http
        check_server(sys.executable, http)
        print(f"  {http}: head time and size, garbage, the connection cap, a request: ok")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())

"""Hostile clients over a real socket, against `vpp-sandbox serve` with each HTTP parser.

Oversized and endless heads, header floods, slow heads (slowloris), lying Content-Lengths,
idle and kept-alive connections, bytes that are not HTTP, too many connections: each is
answered with its status in the error format where an answer is possible (431, 408, 400, 503),
else the connection is closed; nothing is stored, and the server keeps answering. The limits
are set small (half a second, 4 KiB) so the whole battery takes seconds.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from tests.serve_process import Served, served
from tests.test_http_errors import ERROR_VALIDATOR
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

pytestmark = pytest.mark.slow

TIMEOUT = 0.5  # header, body, idle and keep-alive timeouts of the server under test
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 30
MAX_CONNECTIONS = 12
ACCOUNT = DEFAULT_ACCOUNT[0]


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    db = tmp_path_factory.mktemp(request.param) / "hostile.db"
    args = [
        "--db", str(db),
        "--http", request.param,
        "--header-timeout", str(TIMEOUT),
        "--body-timeout", str(TIMEOUT),
        "--idle-timeout", str(TIMEOUT),
        "--keep-alive-timeout", str(TIMEOUT),
        "--max-header-bytes", str(MAX_HEADER_BYTES),
        "--max-headers", str(MAX_HEADERS),
        "--max-connections", str(MAX_CONNECTIONS),
    ]  # fmt: skip
    with served(*args) as running:
        yield running
    assert f"HTTP:        {request.param};" in running.output


def port_of(server: Served) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def connect(server: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
    return sock


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    out = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            out += data
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    return out, time.monotonic() - started


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def assert_error_response(raw: bytes, status: int, code: str) -> dict[str, Any]:
    assert raw, "the server closed the connection without an answer"
    got, headers, body = parse(raw)
    assert got == status, raw[:400]
    assert headers["content-type"] == "application/json"
    assert headers.get("connection") == "close"
    error: dict[str, Any] = json.loads(body[: int(headers["content-length"])])
    ERROR_VALIDATOR.validate(error)
    assert error["code"] == code, error
    assert error["message"]
    return error


def token(server: Served) -> str:
    r = requests.get(
        f"{server.base_url}/login", auth=(ACCOUNT.account_id, ACCOUNT.api_key), timeout=5
    )
    assert r.status_code == 200, r.text
    return str(r.json()["bearer_token"])


def count(server: Served) -> int:
    """The participations of the account's test mode (the server's view)."""
    headers = {"Authorization": f"Bearer {token(server)}"}
    total, cursor = 0, None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["starting_after"] = cursor
        r = requests.get(
            f"{server.base_url}/vpp-participations", params=params, headers=headers, timeout=5
        )
        assert r.status_code == 200, r.text
        page = r.json()
        total += len(page["data"])
        if not page["has_more"]:
            return total
        cursor = page["data"][-1]["id"]


def create_request(
    server: Served, body: bytes, extra: str = "", length: int | None = None
) -> bytes:
    length = len(body) if length is None else length
    return (
        f"POST /vpp-participations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token(server)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode() + body


def new_body() -> bytes:
    import secrets

    return json.dumps(
        {
            "device_id": "dev_" + secrets.token_hex(12),
            "provider_id": "prv_" + secrets.token_hex(12),
            "programme_id": "vpr_" + secrets.token_hex(12),
        }
    ).encode()


# -- heads ---------------------------------------------------------------------------------------


def test_a_head_over_the_limit_in_one_piece_is_431(server: Served) -> None:
    sock = connect(server)
    sock.sendall(
        b"GET /login HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n"
    )
    raw, _ = read_until_closed(sock)
    assert_error_response(raw, 431, "request_header_too_large")


def send_endless_header(sock: socket.socket) -> tuple[int, bytes]:
    """Send a 10 MB header until the server cuts it off: the bytes sent, and its answer."""
    sent = 0
    try:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(1000):  # 10 MB in 10 KB pieces
            sock.sendall(b"a" * 10_000)
            sent += 10_000
    except (BrokenPipeError, ConnectionResetError):
        pass
    raw, _ = read_until_closed(sock)
    return sent, raw


def test_an_endless_header_is_cut_off_at_the_limit(server: Served) -> None:
    """A 10 MB header is refused after about the limit, not buffered (issue 10: 288 MB)."""
    sent, raw = send_endless_header(connect(server))
    assert sent < 10_000_000, "the server read a 10 MB header to the end"
    if raw:  # the answer may be lost to a reset while we were still sending
        assert_error_response(raw, 431, "request_header_too_large")


def test_more_header_fields_than_allowed_is_431(server: Served) -> None:
    fields = "".join(f"X-F{i}: {i}\r\n" for i in range(MAX_HEADERS + 1))
    sock = connect(server)
    sock.sendall(f"GET /login HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
    raw, _ = read_until_closed(sock)
    error = assert_error_response(raw, 431, "request_header_too_large")
    assert str(MAX_HEADERS) in error["message"]


def test_a_head_at_the_limits_is_served(server: Served) -> None:
    """The control: exactly the allowed number of fields, a head just under the byte limit."""
    fields = "".join(
        f"X-F{i}: {i}\r\n" for i in range(MAX_HEADERS - 3)
    )  # + Host, Connection, X-Pad
    head = f"GET /openapi.json HTTP/1.1\r\nHost: x\r\n{fields}Connection: close\r\n"
    pad = "p" * (MAX_HEADER_BYTES - len(head) - 64)
    sock = connect(server)
    sock.sendall(f"{head}X-Pad: {pad}\r\n\r\n".encode())
    raw, _ = read_until_closed(sock)
    assert parse(raw)[0] == 200, raw[:300]


def test_a_slow_head_is_408_after_the_header_timeout(server: Served) -> None:
    """Slowloris: one header byte every 0.1 s never completes the head."""
    sock = connect(server)
    sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    raw = b""
    try:
        for _ in range(40):  # would take 4 s
            sock.sendall(b"X")
            time.sleep(0.1)
            sock.settimeout(0.001)
            try:
                raw += sock.recv(65536)
            except TimeoutError:
                continue
            if raw:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    rest, _ = read_until_closed(sock)
    elapsed = time.monotonic() - started
    assert_error_response(raw + rest, 408, "request_timeout")
    assert elapsed < TIMEOUT + 1.5


def test_an_idle_connection_is_closed_without_an_answer(server: Served) -> None:
    sock = connect(server)
    raw, elapsed = read_until_closed(sock)
    assert raw == b""
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + 1.5


def test_a_kept_alive_connection_is_closed_when_idle(server: Served) -> None:
    sock = connect(server)
    sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
    raw, elapsed = read_until_closed(sock)
    assert parse(raw)[0] == 200
    assert elapsed < TIMEOUT + 1.5


def test_bytes_that_are_not_http_are_400_request_malformed(server: Served) -> None:
    for garbage in (
        b"HELLO\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\r\n\r\n",
    ):
        sock = connect(server)
        sock.sendall(garbage)
        raw, _ = read_until_closed(sock)
        assert_error_response(raw, 400, "request_malformed")


# -- bodies --------------------------------------------------------------------------------------


def test_a_content_length_larger_than_the_body_is_408_and_stores_nothing(server: Served) -> None:
    before = count(server)
    body = new_body()
    sock = connect(server)
    sock.sendall(create_request(server, body, length=len(body) + 50))
    raw, elapsed = read_until_closed(sock)
    assert_error_response(raw, 408, "request_timeout")
    assert elapsed < TIMEOUT + 1.5
    assert count(server) == before


def test_a_slow_body_is_408_and_stores_nothing(server: Served) -> None:
    before = count(server)
    body = new_body()
    sock = connect(server)
    sock.sendall(create_request(server, b"", length=len(body)))
    raw = b""
    try:
        for i in range(len(body)):  # a byte every 0.1 s: seconds in all
            sock.sendall(body[i : i + 1])
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    raw, _ = read_until_closed(sock)
    assert_error_response(raw, 408, "request_timeout")
    assert count(server) == before


def test_content_length_and_chunked_together_are_refused(server: Served) -> None:
    """Request smuggling's shape: both framings at once is not a request."""
    body = new_body()
    before = count(server)
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    sock = connect(server)
    sock.sendall(create_request(server, chunked, extra="Transfer-Encoding: chunked\r\n"))
    raw, _ = read_until_closed(sock)
    status, _, _ = parse(raw)
    assert status == 400
    assert_error_response(raw, 400, "request_malformed")
    assert count(server) == before


def test_a_chunked_body_is_read_and_stored(server: Served) -> None:
    body = new_body()
    before = count(server)
    head = (
        f"POST /vpp-participations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(server)}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    chunks = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:10], body[10:])
    )
    sock = connect(server)
    sock.sendall(head + chunks + b"0\r\n\r\n")
    raw, _ = read_until_closed(sock)
    status, _, payload = parse(raw)
    assert status == 201, raw[:500]
    assert json.loads(payload)["device_id"] == json.loads(body)["device_id"]
    assert count(server) == before + 1


def test_a_body_over_the_limit_is_413_without_being_read(server: Served) -> None:
    before = count(server)
    sock = connect(server)
    sock.sendall(create_request(server, b"", length=10_000_000))
    raw, _ = read_until_closed(sock)
    assert_error_response(raw, 413, "request_too_large")
    assert count(server) == before


# -- connections ---------------------------------------------------------------------------------


def test_connections_beyond_the_cap_are_503_then_the_server_recovers(server: Served) -> None:
    socks = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.1)  # let the server register them
        extra = connect(server)
        raw, _ = read_until_closed(extra)
        error = assert_error_response(raw, 503, "server_busy")
        assert parse(raw)[1]["retry-after"] == "1"
        assert error["type"] == "api_error"
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 3
    while True:
        try:
            r = requests.get(f"{server.base_url}/openapi.json", timeout=5)
            if r.status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "the server did not recover"
        time.sleep(0.05)


def test_the_server_answers_normally_after_the_battery(server: Served) -> None:
    r = requests.get(
        f"{server.base_url}/vpp-participations",
        headers={"Authorization": f"Bearer {token(server)}"},
        timeout=5,
    )
    assert r.status_code == 200
    jsonschema.Draft4Validator({"type": "object", "required": ["data"]}).validate(r.json())


def test_the_limits_are_settings_with_defaults(tmp_path: Path) -> None:
    from vpp_sandbox.mock_server.settings import Settings

    s = Settings.from_env(
        {"VPP_MAX_HEADER_BYTES": "1000", "VPP_BODY_TIMEOUT": "2.5", "VPP_HTTP": "H11"}
    )
    assert (s.max_header_bytes, s.body_timeout, s.http) == (1000, 2.5, "h11")
    d = Settings()
    assert d.max_header_bytes == 32 * 1024 and d.max_headers == 100
    assert d.header_timeout == d.body_timeout == d.idle_timeout == 10.0
    assert d.keep_alive_timeout == 5.0 and d.max_connections == 1000
    for bad in ({"VPP_MAX_HEADERS": "0"}, {"VPP_HEADER_TIMEOUT": "soon"}, {"VPP_HTTP": "h3"}):
        with pytest.raises(ValueError):
            Settings.from_env(bad)

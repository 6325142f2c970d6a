"""Hostile clients and a hostile upstream over real sockets, against `vpp-sandbox proxy`.

The proxy is served with the sandbox's own HTTP limits (tests/test_hostile_http.py holds them
against `serve`): slowloris heads, endless and crowded heads, slow bodies, idle and kept-alive
connections, too many connections, each answered as the server answers them, with the proxy's
context; and nothing of such a request reaches the upstream. Behind it, tests/hostile_upstream.py
answers gzip bombs, a status 999, 10 MB pages and slow refusals of forged tokens. The limits are
set small (half a second, 4 KiB) so the battery takes seconds.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from tests.hostile_upstream import ACCOUNT_ID, Upstream, big, bomb, hostile_upstream
from tests.proxy_process import proxied
from tests.serve_process import Served
from tests.test_hostile_http import (
    assert_error_response,
    parse,
    read_until_closed,
    send_endless_header,
)

pytestmark = pytest.mark.slow

TIMEOUT = 0.5  # head, body, idle and keep-alive timeouts of the proxy under test
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 30
MAX_CONNECTIONS = 30
SLOWLORIS = 20
LIMITS = [
    "--header-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT),
    "--idle-timeout", str(TIMEOUT), "--keep-alive-timeout", str(TIMEOUT),
    "--max-header-bytes", str(MAX_HEADER_BYTES), "--max-headers", str(MAX_HEADERS),
    "--max-connections", str(MAX_CONNECTIONS), "--timeout", "5",
    "--max-response-bytes", "12000000",
]  # fmt: skip
VPP = "/vpp-participations"
# What is not about the protocol runs against one of the two proxies only.
ONE_PARSER = pytest.mark.parametrize("proxy", ["httptools"], indirect=True)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with hostile_upstream() as running:
        yield running


@pytest.fixture(scope="module", params=["httptools", "h11"])
def proxy(request: pytest.FixtureRequest, upstream: Upstream) -> Iterator[Served]:
    with proxied(upstream.base_url, "--http", request.param, *LIMITS) as running:
        yield running
    assert f"HTTP: {request.param}; heads up to {MAX_HEADER_BYTES} bytes" in running.output


def connect(proxy: Served) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(proxy.base_url.rsplit(":", 1)[1])), 5)


def assert_proxy_error(raw: bytes, status: int, code: str) -> None:
    error = assert_error_response(raw, status, code)
    assert error["context"] == "vpp_sandbox.proxy", error


def forwarded(upstream: Upstream, marker: str) -> list[str]:
    """What reached the upstream until the request carrying `marker` (sent last) did: the
    proxy forwards one token's requests in order, so anything before it has arrived too."""
    deadline = time.monotonic() + 10
    while not any(r.headers.get("x-marker") == marker for r in upstream.received):
        assert time.monotonic() < deadline, "the marker request never reached the upstream"
        time.sleep(0.01)
    seen: list[str] = []
    for received in upstream.received:
        if received.headers.get("x-marker") == marker:
            return seen
        seen.append(received.headers.get("x-marker") or "")
    return seen


def marker_request(proxy: Served, marker: str, token: str) -> None:
    r = requests.get(f"{proxy.base_url}{VPP}", timeout=10, headers={
        "X-Marker": marker, "Authorization": f"Bearer {token}"})  # fmt: skip
    assert r.status_code == 200, r.text


def token_of(account: str, key: str = "the upstream's signing key, 32 bytes or more") -> str:
    claims = {"account_id": account, "live_mode": False, "exp": int(time.time()) + 600}
    return jwt.encode(claims, key, algorithm="HS256")


# -- heads, bodies and connections: the sandbox's limits ----------------------------------------


def test_slowloris_connections_are_all_408_and_closed(proxy: Served) -> None:
    """20 heads at once, a byte every 0.1 s: each is answered 408 and closed after the head
    timeout (before, the proxy held 200 of 200 open after 45 s)."""
    socks = [connect(proxy) for _ in range(SLOWLORIS)]
    for sock in socks:
        sock.sendall(b"GET /vpp-participations HTTP/1.1\r\nHost: x\r\n")
        sock.setblocking(False)
    started = time.monotonic()
    answers = [b""] * SLOWLORIS
    open_ = set(range(SLOWLORIS))
    while open_ and time.monotonic() - started < TIMEOUT + 3:
        for i in sorted(open_):
            try:
                while data := socks[i].recv(65536):
                    answers[i] += data
                open_.discard(i)  # EOF: answered and closed
                continue
            except BlockingIOError:
                pass  # still open
            except OSError:
                open_.discard(i)  # reset after its answer
                continue
            with contextlib.suppress(OSError):  # closed meanwhile: the next round reads it
                socks[i].send(b"X")
        time.sleep(0.1)  # the slowloris pace
    elapsed = time.monotonic() - started
    for sock in socks:
        sock.close()
    assert not open_, f"{len(open_)} of {SLOWLORIS} slowloris connections still open"
    assert elapsed < TIMEOUT + 2
    answered = [raw for raw in answers if raw]
    assert len(answered) >= SLOWLORIS - 2  # an answer may be lost to a reset
    for raw in answered:
        assert_proxy_error(raw, 408, "request_timeout")


def test_an_endless_header_is_cut_off_at_the_limit(proxy: Served) -> None:
    """A 10 MB header is refused after about the limit (before, 307 MB of header went in)."""
    sent, raw = send_endless_header(connect(proxy))
    assert sent < 10_000_000, "the proxy read a 10 MB header to the end"
    if raw:  # the answer may be lost to a reset while we were still sending
        assert_proxy_error(raw, 431, "request_header_too_large")


def test_a_crowded_or_large_head_in_one_piece_is_431(proxy: Served) -> None:
    fields = "".join(f"X-F{i}: {i}\r\n" for i in range(MAX_HEADERS + 1))
    for head in (
        f"GET /login HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode(),
        b"GET /login HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n",
    ):
        sock = connect(proxy)
        sock.sendall(head)
        raw, _ = read_until_closed(sock)
        assert_proxy_error(raw, 431, "request_header_too_large")


def test_idle_and_kept_alive_connections_are_closed(proxy: Served) -> None:
    sock = connect(proxy)
    raw, elapsed = read_until_closed(sock)
    assert raw == b"" and elapsed < TIMEOUT + 1.5
    sock = connect(proxy)
    sock.sendall(b"GET /vpp-participations HTTP/1.1\r\nHost: x\r\n\r\n")
    raw, elapsed = read_until_closed(sock)
    assert parse(raw)[0] == 200
    assert elapsed < TIMEOUT + 1.5


def test_connections_beyond_the_cap_are_503_then_the_proxy_recovers(
    proxy: Served, upstream: Upstream
) -> None:
    url = f"{proxy.base_url}{VPP}"
    upstream.released.clear()
    held = [
        threading.Thread(target=lambda: requests.get(url, headers={"X-Answer": "hold"},
                                                     timeout=15))
        for _ in range(MAX_CONNECTIONS)
    ]  # fmt: skip
    for thread in held:
        thread.start()
    try:
        deadline = time.monotonic() + 10
        while upstream.holding < MAX_CONNECTIONS:  # every connection is the proxy's, busy
            assert time.monotonic() < deadline, upstream.holding
            time.sleep(0.01)
        raw, _ = read_until_closed(connect(proxy))
        assert_proxy_error(raw, 503, "server_busy")
        assert parse(raw)[1]["retry-after"] == "1"
        assert f"vpp-sandbox proxy has {MAX_CONNECTIONS} connections open".encode() in raw
    finally:
        upstream.release()
        for thread in held:
            thread.join(timeout=20)
    assert requests.get(url, timeout=5).status_code == 200


def test_a_slow_or_short_body_is_408_and_nothing_is_forwarded(
    proxy: Served, upstream: Upstream
) -> None:
    token = token_of(ACCOUNT_ID)
    head = (
        f"POST {VPP} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nX-Marker: slow\r\nContent-Length: 40\r\n\r\n"
    ).encode()
    slow = connect(proxy)
    slow.sendall(head)
    raw = b""
    try:
        for _ in range(20):  # a byte every 0.1 s: 2 s for the body, four times the limit
            slow.sendall(b"{")
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    raw, _ = read_until_closed(slow)
    assert_proxy_error(raw, 408, "request_timeout")
    short = connect(proxy)
    short.sendall(head + b"{}")  # 2 bytes of 40, then nothing
    raw, elapsed = read_until_closed(short)
    assert_proxy_error(raw, 408, "request_timeout")
    assert elapsed < TIMEOUT + 1.5
    marker_request(proxy, "after the slow bodies", token)
    assert "slow" not in forwarded(upstream, "after the slow bodies")


@ONE_PARSER
def test_a_client_that_leaves_mid_body_has_nothing_forwarded(
    proxy: Served, upstream: Upstream
) -> None:
    token = token_of(ACCOUNT_ID)
    sock = connect(proxy)
    sock.sendall((
        f"POST {VPP} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nX-Marker: partial\r\nContent-Length: 100\r\n\r\n"
    ).encode() + b'{"device_id": "dev_')  # fmt: skip
    sock.close()  # before the body is whole
    marker_request(proxy, "after the partial body", token)
    assert "partial" not in forwarded(upstream, "after the partial body")


# -- what the upstream answers -------------------------------------------------------------------


@ONE_PARSER
def test_an_unknown_upstream_status_is_a_502_on_a_connection_that_stays_open(
    proxy: Served,
) -> None:
    with requests.Session() as session:
        r = session.get(f"{proxy.base_url}{VPP}", headers={"X-Answer": "status 999"}, timeout=10)
        assert r.status_code == 502, r.text
        error = r.json()
        assert error["code"] == "upstream_status_invalid" and "status 999" in error["message"]
        again = session.get(f"{proxy.base_url}{VPP}", timeout=10)  # the same connection
        assert again.status_code == 200


@ONE_PARSER
def test_a_forged_token_queues_behind_nobody_else(proxy: Served, upstream: Upstream) -> None:
    """Forged tokens (the tenant's claims, another key) whose requests the upstream holds and
    then refuses: the tenant's own requests go through at once, before and after the upstream
    accepted its token."""
    real = token_of(ACCOUNT_ID)
    forged = token_of(ACCOUNT_ID, "a forger's key, at least 32 bytes long")
    url = f"{proxy.base_url}{VPP}"
    for round_ in range(2):
        upstream.released.clear()
        flood = [
            threading.Thread(target=lambda: requests.get(url, timeout=15, headers={
                "Authorization": f"Bearer {forged}", "X-Answer": "hold 401"}))
            for _ in range(4)
        ]  # fmt: skip
        for thread in flood:
            thread.start()
        deadline = time.monotonic() + 5
        while upstream.holding < 1:  # the first forged request is held, the rest queue
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        r = requests.get(url, headers={"Authorization": f"Bearer {real}"}, timeout=15)
        waited = time.monotonic() - started
        upstream.release()
        for thread in flood:
            thread.join(timeout=20)
        assert r.status_code == 200, (round_, r.status_code, r.text)
        assert waited < 1.0, f"round {round_}: the tenant waited {waited:.1f} s behind a forger"


@ONE_PARSER
def test_a_10_mb_answer_is_judged_while_other_tenants_are_answered(proxy: Served) -> None:
    """Three tenants get a 10 MB page each at once; a fourth, on one kept-alive connection, is
    answered throughout. Before, each page was judged on the event loop and every other
    namespace waited for it (2.7 s in the issue's run; 2.4 s of 3.5 s here, with 4 answers to
    the fourth tenant). Judged on threads, the checks still share the GIL with the loop, so the
    fourth tenant is slowed, never stopped: its worst wait is held to a quarter of the time the
    pages took, which scales with the machine's load as both do."""
    page = big(10)  # made once, before timing
    url = f"{proxy.base_url}{VPP}"
    sizes: list[int] = []

    def large(n: int) -> None:
        r = requests.get(url, timeout=60, headers={
            "Authorization": f"Bearer {token_of(f'acc_{n:024x}')}", "X-Answer": "big 10"})
        sizes.append(len(r.content) if r.status_code == 200 else -r.status_code)

    threads = [threading.Thread(target=large, args=(n,)) for n in range(3)]
    waits: list[float] = []
    with requests.Session() as session:
        headers = {"Authorization": f"Bearer {token_of('acc_' + '9' * 24)}"}
        assert session.get(url, headers=headers, timeout=10).status_code == 200  # connected
        began = time.monotonic()
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            started = time.monotonic()
            assert session.get(url, headers=headers, timeout=10).status_code == 200
            waits.append(time.monotonic() - started)
        took = time.monotonic() - began
    assert sizes == [len(page)] * 3, sizes
    assert len(waits) >= 10, (took, waits)
    assert max(waits) < took / 4, f"another tenant waited {max(waits):.2f} s of {took:.2f} s"


def test_a_gzip_bomb_is_a_502_and_the_proxy_stays_small(
    upstream: Upstream, tmp_path: Path
) -> None:
    """128 MiB of JSON in a gzip answer of 128 KiB, against a 1 MiB cap (before: the cap
    counted encoded bytes, and a 1 GiB bomb took the proxy to 2.4 GB)."""
    bomb(128)  # made once, before the proxy starts
    with proxied(upstream.base_url, "--max-response-bytes", str(1024 * 1024)) as running:
        pid = running.process.pid
        before = _peak_mb(pid)
        r = requests.get(f"{running.base_url}{VPP}", headers={"X-Answer": "bomb 128"},
                         timeout=30)  # fmt: skip
        grown = _peak_mb(pid) - before
    assert r.status_code == 502, r.text[:300]
    assert r.json()["code"] == "upstream_response_too_large"
    assert grown < 32, f"the proxy's peak memory grew {grown} MB reading a gzip bomb"


def _peak_mb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")

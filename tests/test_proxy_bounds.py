"""`vpp-sandbox proxy`'s bounds, in-process: decoded size, judging off the loop, whole requests,
final statuses, and namespaces no forged token can join.

The proxy runs in front of an in-process upstream (httpx's ASGITransport), as in
tests/test_contract_proxy.py; tests/test_hostile_proxy.py holds the same cases over sockets
against the real `vpp-sandbox proxy` command.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import threading
import time
import tracemalloc
import zlib
from collections.abc import Sequence
from typing import Any

import jwt
import pytest

from tests.contract_defects import build
from tests.hostile_upstream import ACCOUNT_ID, EMPTY_PAGE, REFUSED, bomb, participation
from tests.test_contract_proxy import (
    VPP,
    Answer,
    Tap,
    _create_body,
    _printed,
    _proxy,
    _token,
    call,
)
from vpp_sandbox.contract_tests.ledger import Identity
from vpp_sandbox.contract_tests.proxy import INLINE_BYTES
from vpp_sandbox.contract_tests.proxy_body import BoundedBody, TooLarge, accept_encoding
from vpp_sandbox.contract_tests.proxy_ledger import ProxyLedger, token_key
from vpp_sandbox.contract_tests.target import Exchange

JSON = (b"content-type", b"application/json")
JUDGING = 0.5  # seconds a large answer's checks take in the judging test


def bearer(account: str, key: str = "a signing key of at least 32 bytes", **claims: Any) -> str:
    body = {"account_id": account, "live_mode": False, "exp": int(time.time()) + 600, **claims}
    return "Bearer " + jwt.encode(body, key, algorithm="HS256")


def answering(
    body: bytes, *, status: int = 200, headers: Sequence[tuple[bytes, bytes]] = ()
) -> Any:
    """An ASGI upstream that answers every request with `body`."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [JSON, *headers]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    return app


# -- decoded bytes -------------------------------------------------------------------------------


def test_a_gzip_bomb_is_a_502_without_inflating_past_the_cap() -> None:
    """64 MiB of JSON in 64 KiB of gzip, against a 1 MiB cap: refused, at most the cap decoded."""
    proxy = _proxy(answering(bomb(64), headers=[(b"content-encoding", b"gzip")]),
                   max_response_bytes=1024 * 1024)  # fmt: skip
    tracemalloc.start()
    try:
        answer = asyncio.run(call(proxy, "GET", VPP))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status == 502, answer.body[:300]
    error = answer.json()
    assert error["code"] == "upstream_response_too_large"
    assert "as sent or decoded" in error["message"] and "--max-response-bytes" in error["message"]
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.0f} MiB held while reading a gzip bomb"
    assert proxy.tally.upstream_errors["too large"] == 1


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw deflate", "gzip, gzip"])
def test_a_coded_answer_is_forwarded_as_sent_and_judged_decoded(coding: str) -> None:
    plain = json.dumps({"object": "error", "code": "x"}).encode()  # §7 breaks: no type etc.
    encoded = {
        "gzip": lambda: gzip.compress(plain),
        "deflate": lambda: zlib.compress(plain),
        "raw deflate": lambda: zlib.compress(plain)[2:-4],
        "gzip, gzip": lambda: gzip.compress(gzip.compress(plain)),
    }[coding]()
    header = coding.replace("raw ", "").encode()
    proxy = _proxy(answering(encoded, status=404, headers=[(b"content-encoding", header)]))
    answer = asyncio.run(call(proxy, "GET", VPP + "/vpp_" + "0" * 24))
    assert answer.status == 404 and answer.body == encoded  # byte for byte
    assert proxy.tally.checked == 1 and proxy.tally.check_errors == 0
    assert "§7" in proxy.tally.broken  # the decoded error object was judged


def test_the_bound_holds_for_every_step_of_a_chain_of_codings() -> None:
    inner = gzip.compress(b" " * (4 * 1024 * 1024))  # 4 MiB, 4 KiB encoded
    body = BoundedBody("gzip, gzip", 1024 * 1024)
    with pytest.raises(TooLarge):
        body.feed(gzip.compress(inner))
        body.finish()
    assert body.decoded_size <= 1024 * 1024


def test_accept_encoding_asks_only_for_what_the_proxy_decodes_and_other_codings_are_502() -> None:
    assert accept_encoding("gzip, deflate, br, zstd") == "gzip, deflate"
    assert accept_encoding("br;q=1.0, gzip;q=0.5, *;q=0.1") == "gzip;q=0.5"
    assert accept_encoding("br") == "identity"
    tap = Tap(answering(b"\x1b\x00", headers=[(b"content-encoding", b"br")]))
    proxy = _proxy(tap)
    answer = asyncio.run(call(proxy, "GET", VPP, headers=[("Accept-Encoding", "br, gzip")]))
    assert (b"accept-encoding", b"gzip") in tap.requests[0]["headers"]
    assert answer.status == 502 and answer.json()["code"] == "upstream_encoding_unsupported"
    assert "Content-Encoding br" in answer.json()["message"]


def test_an_answer_that_does_not_decode_passes_through_unjudged() -> None:
    broken = b"\x1f\x8b\x08\x00" + b"not gzip at all"
    proxy = _proxy(answering(broken, headers=[(b"content-encoding", b"gzip")]))
    answer = asyncio.run(call(proxy, "GET", VPP))
    assert answer.status == 200 and answer.body == broken
    assert proxy.tally.check_errors == 1
    assert "does not decode as its Content-Encoding gzip says" in _printed(proxy)


# -- judging off the loop ------------------------------------------------------------------------


def test_large_answers_are_judged_off_the_loop_at_most_judges_at_once() -> None:
    """Four tenants' large answers, each taking 0.5 s to judge, and a fifth tenant's small
    exchanges meanwhile: two large ones are judged at a time, and the small ones never wait."""
    page = json.dumps({"object": "list", "url": VPP, "has_more": False,
                       "data": [participation(n) for n in range(60, 0, -1)]}).encode()  # fmt: skip
    assert len(page) > INLINE_BYTES

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        large = b"large" in dict(scope["headers"]).get(b"x-answer", b"")
        await send({"type": "http.response.start", "status": 200, "headers": [JSON]})
        await send({"type": "http.response.body", "body": page if large else EMPTY_PAGE})

    proxy = _proxy(upstream, judges=2)
    observe = proxy.ledger.observe
    judging, peak, guard = 0, 0, threading.Lock()

    def slow_observe(exchange: Exchange, key: object | None = None) -> Any:
        nonlocal judging, peak
        if len(exchange.text) <= INLINE_BYTES:
            return observe(exchange, key)
        with guard:
            judging += 1
            peak = max(peak, judging)
        time.sleep(JUDGING)  # a large answer's checks (time.sleep frees the GIL, as I/O would)
        with guard:
            judging -= 1
        return observe(exchange, key)

    proxy.ledger.observe = slow_observe  # type: ignore[method-assign]

    async def scenario() -> tuple[list[Answer], list[float]]:
        large = [
            asyncio.create_task(call(proxy, "GET", VPP, query=b"limit=100", headers=[
                ("Authorization", bearer(ACCOUNT_ID, f"tenant {n} signs with this key 32b")),
                ("X-Answer", "large")]))
            for n in range(4)
        ]  # fmt: skip
        small = bearer("acc_" + "5" * 24)
        waits = []
        while not all(task.done() for task in large):
            started = time.monotonic()
            got = await call(proxy, "GET", VPP, headers=[("Authorization", small)])
            assert got.status == 200
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0)  # an in-process exchange need not yield: let the others run
        return [task.result() for task in large], waits

    started = time.monotonic()
    answers, waits = asyncio.run(scenario())
    took = time.monotonic() - started
    assert [a.status for a in answers] == [200] * 4 and all(a.body == page for a in answers)
    assert peak == 2, f"{peak} large answers judged at once"
    assert len(waits) >= 5 and max(waits) < JUDGING / 2, (len(waits), max(waits))
    assert took < 4 * JUDGING  # two at a time: two rounds, not four
    assert proxy.tally.checked == 4 + len(waits) and proxy.tally.violations == 0


def test_the_violations_kept_for_the_report_do_not_keep_their_large_answers() -> None:
    """The tally keeps each rule's first violations for JUnit: their messages and
    reproductions, not the 2 MB pages (and their parsed JSON, ten times that) they were on."""
    items = [participation(n) for n in range(1500, 0, -1)]
    page = json.dumps({"object": "list", "url": VPP, "has_more": False, "data": items}).encode()
    proxy = _proxy(answering(page))

    async def scenario() -> None:
        for n in range(6):  # each breaks §2 (over 100 items) and rule 15 (over its limit)
            auth = ("Authorization", bearer(f"acc_{n:024x}"))
            assert (await call(proxy, "GET", VPP, headers=[auth])).status == 200

    asyncio.run(call(_proxy(answering(EMPTY_PAGE)), "GET", VPP))  # the schemas compiled
    tracemalloc.start()
    try:
        asyncio.run(scenario())
        gc.collect()  # what is only garbage does not count
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(proxy.tally.examples["15"]) == 6
    # The ledger keeps the 1,500 participations (--max-participations bounds them): 12 MiB
    # in all; the six answers, kept with their violations, made it 40 MiB.
    assert held < 24 * 1024 * 1024, f"{held / 2**20:.0f} MiB held after six large answers"
    junit = proxy.tally.examples["15"][0]
    assert junit.curl.startswith("curl -X GET") and "items for limit 30" in junit.message


# -- whole requests and final statuses -----------------------------------------------------------


async def _partial(app: Any, body: bytes) -> list[dict[str, Any]]:
    """A POST whose client sends part of its body, then goes away; what the proxy sent."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": VPP, "raw_path": VPP.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("proxy", 8090),
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    messages = [
        {"type": "http.request", "body": body[: len(body) // 2], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_a_client_that_leaves_mid_body_has_nothing_forwarded() -> None:
    tap = Tap(build(None))
    proxy = _proxy(tap)
    sent = asyncio.run(_partial(proxy, _create_body()))
    assert tap.requests == [], "a part of a request was forwarded"
    assert sent == []  # nobody to answer
    assert proxy.tally.abandoned == 1
    assert "left by their client before the body was whole (not forwarded): 1" in proxy.finish()


@pytest.mark.parametrize("status", [100, 199, 600, 999])
def test_a_status_that_is_not_a_final_http_status_is_a_502(status: int) -> None:
    proxy = _proxy(answering(b"{}", status=status))
    answer = asyncio.run(call(proxy, "GET", VPP))
    assert answer.status == 502
    error = answer.json()
    assert set(error) == {
        "object", "type", "code", "message", "context", "live_mode", "time_created",
    }
    assert error["code"] == "upstream_status_invalid" and error["type"] == "api_error"
    assert f"with status {status}, which is not a final HTTP status (200 to 599)" in (
        error["message"]
    )
    assert proxy.tally.upstream_errors["invalid status"] == 1


# -- namespaces ----------------------------------------------------------------------------------


def test_a_token_joins_its_namespace_only_once_the_upstream_accepted_it() -> None:
    ledger = ProxyLedger()
    real, again = bearer("acc_real"), bearer("acc_real", iat=1)
    forged = bearer("acc_real", "anyone can sign these claims with a key")
    assert {ledger.namespace_of({"Authorization": t}) for t in (real, again, forged)} == {
        token_key(t.split()[1]) for t in (real, again, forged)
    }  # three tokens, three queues: the claims alike name nobody yet

    def answered(token: str, status: int, data: Any) -> None:
        ledger.observe(Exchange("GET", VPP, {}, {"Authorization": token}, None, status, {},
                                json.dumps(data), "u", data))  # fmt: skip

    page = {"object": "list", "url": VPP, "data": [], "has_more": False}
    answered(real, 200, page)
    answered(again, 200, page)
    answered(forged, 401, {"object": "error"})
    tenant = Identity("acc_real", False)
    assert ledger.namespace_of({"Authorization": real}) == tenant
    assert ledger.namespace_of({"Authorization": again}) == tenant
    assert ledger.namespace_of({"Authorization": forged}) == token_key(forged.split()[1])
    # A refused token speaks for nobody: its exchange is judged as without a token.
    refused = Exchange("GET", VPP, {}, {"Authorization": forged}, None, 401, {}, "", "u", None)
    assert ledger.identity_for(refused) is None


def test_a_forged_token_queues_behind_nobody_else() -> None:
    """Requests with forged tokens (the tenant's claims, another key) held by the upstream do
    not hold up the tenant's own requests, before or after its token was accepted."""
    key = "the upstream's signing key, 32 bytes or more"
    real = bearer(ACCOUNT_ID, key)
    forged = bearer(ACCOUNT_ID, "a forger's key, at least 32 bytes long")
    release = asyncio.Event()

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        token = dict(scope["headers"])[b"authorization"].decode().split()[1]
        try:
            jwt.decode(token, key, algorithms=["HS256"])
            status, body = 200, EMPTY_PAGE
        except jwt.InvalidTokenError:
            await release.wait()  # a slow refusal: the forger's requests hold their queue
            status, body = 401, REFUSED
        await send({"type": "http.response.start", "status": status, "headers": [JSON]})
        await send({"type": "http.response.body", "body": body})

    proxy = _proxy(upstream, timeout=5)

    async def scenario() -> list[float]:
        waits = []
        for round_ in range(2):  # the token not yet accepted, then accepted
            flood = [asyncio.create_task(call(proxy, "GET", VPP, headers=[
                ("Authorization", forged)])) for _ in range(4)]  # fmt: skip
            await asyncio.sleep(0.05)  # the flood is queued
            started = time.monotonic()
            got = await call(proxy, "GET", VPP, headers=[("Authorization", real)])
            waits.append(time.monotonic() - started)
            assert got.status == 200, (round_, got.status, got.body)
            release.set()
            assert [(await task).status for task in flood] == [401] * 4
            release.clear()
        return waits

    waits = asyncio.run(scenario())
    assert max(waits) < 0.5, waits
    assert proxy.tally.violations == 0, _printed(proxy)


def test_a_forged_token_refused_by_the_upstream_changes_nothing_the_tenant_is_judged_on() -> None:
    """A forger's update of the tenant's participation is a 401; before, it was taken as the
    tenant's rejected update, and the autopilot's next move then read as a broken rule 12."""
    proxy = _proxy(build(None))

    async def scenario() -> None:
        token = await _token(proxy)
        auth = ("Authorization", f"Bearer {token}")
        created = await call(proxy, "POST", VPP, body=_create_body(),
                             headers=[auth, ("Content-Type", "application/json")])  # fmt: skip
        pid = created.json()["id"]
        claims = jwt.decode(token, options={"verify_signature": False})
        forged = jwt.encode(claims, "not the sandbox's key, but 32 bytes", algorithm="HS256")
        move = json.dumps({"participation_state": [{"state": "AWAITING_CUSTOMER_CONSENT"}]})
        refused = await call(proxy, "POST", f"{VPP}/{pid}", body=move.encode(), headers=[
            ("Authorization", f"Bearer {forged}"), ("Content-Type", "application/json")])
        assert refused.status == 401
        advanced = await call(proxy, "POST", "/_sandbox/clock", body=b'{"advance": "P1D"}',
                              headers=[auth, ("Content-Type", "application/json")])  # fmt: skip
        assert advanced.status == 200, advanced.body
        moved = await call(proxy, "GET", f"{VPP}/{pid}", headers=[auth])
        assert moved.json()["current_state"] != "ENROLMENT_REQUESTED"

    asyncio.run(scenario())
    assert proxy.tally.violations == 0, _printed(proxy)

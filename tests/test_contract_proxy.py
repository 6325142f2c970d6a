"""`vpp-sandbox proxy`: faithful forwarding, every check on every exchange, warn and fail modes.

Most tests run the proxy in-process in front of an in-process upstream (httpx's
ASGITransport: the proxy's own code, its real HTTP client, no sockets); the last ones run the
real `serve` and `proxy` commands over loopback.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.contract_defects import (
    DEFECTS,
    JWT_SECRET,
    SECOND,
    Defect,
    EachParticipation,
    LiveModeFlipped,
    Request,
    Rewriter,
    build,
)
from tests.contract_defects import Answer as DefectAnswer
from tests.serve_process import free_port
from vpp_sandbox.cli import main
from vpp_sandbox.contract_tests.findings import Violation
from vpp_sandbox.contract_tests.ledger import Identity, Ledger, Observation
from vpp_sandbox.contract_tests.proxy import ContractProxy, ProxyOptions
from vpp_sandbox.contract_tests.proxy_ledger import ProxyLedger, identity_of_token, token_key
from vpp_sandbox.contract_tests.proxy_report import RULES, LogEntry, dumps
from vpp_sandbox.contract_tests.report import Options
from vpp_sandbox.contract_tests.runner import SUITES, run_suites
from vpp_sandbox.contract_tests.target import Credentials, Exchange, Target
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

FIRST = DEFAULT_ACCOUNT[0]
TINY = Options(
    max_examples=3, stateful_examples=3, stateful_steps=4, walks=4, walk_steps=8, seed=20261125
)
SCRIPTED = [s for s in SUITES if s not in ("conformance", "stateful")]
PROXY_CHECK = {
    "item_repeated_across_pages": "list_page_respects_cursor",
    "has_more_wrong": "list_page_is_complete",
}
BASIC = "Basic " + base64.b64encode(f"{FIRST.account_id}:{FIRST.api_key}".encode()).decode()
VPP = "/vpp-participations"


# -- helpers -------------------------------------------------------------------------------------


@dataclass
class Tap:
    """ASGI middleware: what the upstream received and what it answered, byte for byte."""

    app: Any
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = {"method": scope["method"], "raw_path": scope["raw_path"],
                "query": scope["query_string"], "headers": list(scope["headers"]), "body": b""}
        answer: dict[str, Any] = {"body": b""}
        self.requests.append(seen)
        self.answers.append(answer)

        async def receive_() -> Any:
            message = await receive()
            seen["body"] += message.get("body", b"")
            return message

        async def send_(message: Any) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["headers"] = message["status"], list(message["headers"])
            else:
                answer["body"] += message.get("body", b"")
            await send(message)

        await self.app(scope, receive_, send_)


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> str | None:
        return next((v.decode() for k, v in self.headers if k == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    app: Any,
    method: str,
    path: str,
    *,
    query: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Answer:
    """One request straight into an ASGI app; the answer exactly as the app sent it."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("proxy", 8090),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers or []],
    }
    sent = False
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> Any:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # nothing more until the response ends
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return Answer(start["status"], list(start["headers"]), b"".join(chunks))


def _proxy(upstream: Any, **options: Any) -> ContractProxy:
    return ContractProxy(
        ProxyOptions("http://upstream", **options),
        transport=httpx.ASGITransport(app=upstream),
        out=io.StringIO(),
    )


def _printed(proxy: ContractProxy) -> str:
    """What the proxy printed: `_proxy` gives it a StringIO."""
    assert isinstance(proxy.out, io.StringIO), proxy.out
    return proxy.out.getvalue()


def _target(proxy: ContractProxy) -> Target:
    return Target(
        Credentials(FIRST.account_id, FIRST.api_key),
        app=proxy,
        second=Credentials(SECOND.account_id, SECOND.api_key),
        jwt_secret=JWT_SECRET,
    )


async def _token(proxy: Any) -> str:
    answer = await call(proxy, "GET", "/login", headers=[("Authorization", BASIC)])
    assert answer.status == 200, answer.body
    token: str = answer.json()["bearer_token"]
    return token


def _create_body() -> bytes:
    return json.dumps({
        "device_id": "dev_" + "ab" * 12, "provider_id": "prv_" + "cd" * 12,
        "programme_id": "vpr_" + "ef" * 12,
    }).encode()


# -- transparency --------------------------------------------------------------------------------


def test_warn_mode_forwards_requests_and_answers_byte_for_byte() -> None:
    tap = Tap(build(None))
    proxy = _proxy(tap)

    async def scenario() -> None:
        token = await _token(proxy)
        auth = ("Authorization", f"Bearer {token}")
        json_type = ("Content-Type", "application/json")
        calls: list[dict[str, Any]] = [
            {"method": "POST", "path": VPP, "body": _create_body(),
             "headers": [auth, json_type, ("X-Custom", "kept"), ("Connection", "X-Drop"),
                         ("X-Drop", "hop"), ("Keep-Alive", "timeout=5"),
                         ("Content-Length", str(len(_create_body())))]},
            {"method": "GET", "path": VPP, "query": b"limit=2&device_id=dev_" + b"ab" * 12,
             "headers": [auth, ("Accept-Encoding", "gzip")]},
            {"method": "GET", "path": VPP + "/vpp_" + "0" * 24, "headers": [auth]},
            {"method": "GET", "path": VPP, "headers": [("Authorization", "Bearer ")]},
            {"method": "DELETE", "path": VPP, "headers": [auth]},
            {"method": "GET", "path": "/no/such/route", "headers": [auth]},
            {"method": "POST", "path": VPP, "body": b"{not json", "headers": [auth, json_type]},
            {"method": "GET", "path": "/_sandbox/clock", "headers": [auth]},
        ]
        for sent in calls:
            answer = await call(proxy, sent["method"], sent["path"], query=sent.get("query", b""),
                                headers=sent["headers"], body=sent.get("body", b""))
            got, upstream = tap.requests[-1], tap.answers[-1]
            # The request, as the client sent it: hop-by-hop headers (and those the client's
            # Connection header names) dropped, Host naming the upstream.
            assert got["method"] == sent["method"]
            assert got["raw_path"] == sent["path"].encode()
            assert got["query"] == sent.get("query", b"")
            assert got["body"] == sent.get("body", b"")
            dropped = {"connection", "x-drop", "keep-alive", "host", "content-length"}
            expected = [(k.lower().encode(), v.strip().encode()) for k, v in sent["headers"]
                        if k.lower() not in dropped]
            assert [h for h in got["headers"] if h[0] not in (b"host", b"content-length")] == (
                expected
            )
            assert (b"host", b"upstream") in got["headers"]
            has_body = bool(sent.get("body"))
            assert any(k == b"content-length" for k, _ in got["headers"]) is has_body
            # The answer, exactly as the upstream sent it.
            assert answer.status == upstream["status"]
            assert answer.body == upstream["body"]
            assert answer.headers == upstream["headers"]

    asyncio.run(scenario())
    assert proxy.tally.exchanges == proxy.tally.checked == 9
    assert proxy.tally.violations == 0


def test_a_length_is_added_only_where_missing_and_a_broken_check_costs_no_answer() -> None:
    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        if scope["method"] == "HEAD":  # the length of the GET's body, and no body
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", b"13")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200,  # chunked: no length
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"a": ', "more_body": True})
        await send({"type": "http.response.body", "body": b'"b"}'})

    proxy = _proxy(upstream)

    def broken(exchange: Exchange, key: object | None = None) -> Observation:
        raise KeyError("a bug in a check")

    proxy.ledger.observe = broken  # type: ignore[method-assign]

    async def scenario() -> tuple[Answer, Answer]:
        return await call(proxy, "GET", "/login"), await call(proxy, "HEAD", "/login")

    got, head = asyncio.run(scenario())
    assert got.status == 200 and got.body == b'{"a": "b"}'
    assert got.headers == [(b"content-type", b"application/json"), (b"content-length", b"10")]
    assert head.body == b"" and head.header(b"content-length") == "13"
    assert proxy.tally.check_errors == 2
    assert "could not check GET /login: KeyError" in _printed(proxy)


def test_an_upstream_with_a_base_path_gets_it_before_every_path() -> None:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        body = json.dumps({"path": scope["path"], "query": scope["query_string"].decode()})
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body.encode()})

    proxy = ContractProxy(ProxyOptions("http://upstream/v1/"),
                          transport=httpx.ASGITransport(app=echo), out=io.StringIO())
    answer = asyncio.run(call(proxy, "GET", VPP, query=b"limit=2&x=%20y"))
    assert answer.json() == {"path": "/v1" + VPP, "query": "limit=2&x=%20y"}
    # The checks judge the operation the client asked for: a text 404 breaks §7 (not an error
    # object), rule 14 (no token, not a 401) and §2 (a list never answers a 404 by the spec).
    assert dict(proxy.tally.broken) == {"§7": 1, "14": 1, "§2": 1}
    (violation,) = proxy.tally.examples["§7"]
    assert violation.exchange.path == VPP and violation.upstream.startswith("http://upstream/v1/")


def test_warn_mode_passes_a_violating_answer_through_and_logs_it(tmp_path: Path) -> None:
    tap = Tap(LiveModeFlipped(build(None)))
    log = tmp_path / "violations.jsonl"
    proxy = _proxy(tap, log=str(log))

    async def scenario() -> tuple[str, Answer]:
        token = await _token(proxy)
        answer = await call(proxy, "POST", VPP, body=_create_body(), headers=[
            ("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")])
        return token, answer

    token, answer = asyncio.run(scenario())
    proxy.finish()
    assert answer.status == 201 and answer.body == tap.answers[-1]["body"]
    pid = answer.json()["id"]
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and token not in log.read_text()
    entry = json.loads(lines[0])
    assert set(entry) == {
        "time", "rule", "check", "participation", "message", "request", "response", "curl",
    }
    assert (entry["rule"], entry["check"], entry["participation"]) == (
        "9", "identity_matches_token", pid)
    assert entry["message"].startswith(f"rule 9 (identity_matches_token): participation {pid}:")
    assert entry["request"]["method"] == "POST"
    assert entry["request"]["url"] == "http://upstream" + VPP
    assert entry["request"]["headers"]["authorization"] == "Bearer $VPP_TOKEN"
    assert entry["request"]["body"] == json.loads(_create_body())
    assert entry["response"]["status"] == 201 and entry["response"]["body"]["id"] == pid
    assert entry["curl"].startswith("curl -X POST -H \"Authorization: Bearer $VPP_TOKEN\"")
    assert entry["curl"].endswith("http://upstream/vpp-participations")
    out = _printed(proxy)
    assert "VIOLATION rule 9 (identity_matches_token)" in out


def test_the_log_never_holds_a_token_or_a_key() -> None:
    token = jwt.encode({"account_id": "acc_x", "live_mode": False}, "k" * 32, algorithm="HS256")
    login = Exchange(
        "GET", "/login", {}, {"Authorization": BASIC}, None, 200, {"content-type": "x"},
        json.dumps({"bearer_token": token}), "http://upstream/login",
        {"bearer_token": token, "expires_in": 3600, "live_mode": True},
    )
    violation = LogEntry("t", Violation("9", "identity_matches_token", "-", "m", login), login,
                         b"", "http://upstream/login")
    line = dumps(violation)
    assert token not in line and FIRST.api_key not in line
    assert BASIC.split()[1] not in line
    assert json.loads(line)["response"]["body"]["bearer_token"] == "$VPP_TOKEN"
    assert '-u "$VPP_ACCOUNT_ID:$VPP_API_KEY"' in violation.curl


def test_fail_mode_answers_a_violation_with_a_marked_502() -> None:
    proxy = _proxy(LiveModeFlipped(build(None)), mode="fail")

    async def scenario() -> tuple[Answer, Answer]:
        token = await _token(proxy)  # a login breaks nothing: it passes in fail mode too
        auth = ("Authorization", f"Bearer {token}")
        created = await call(proxy, "POST", VPP, body=_create_body(),
                             headers=[auth, ("Content-Type", "application/json")])
        listed = await call(proxy, "GET", VPP, query=b"device_id=dev_" + b"cd" * 12,
                            headers=[auth])
        return created, listed

    created, listed = asyncio.run(scenario())
    assert listed.status == 200 and listed.json()["data"] == []  # nothing to break: passed
    assert created.status == 502
    assert created.header(b"x-vpp-proxy") == "contract_violation"
    assert created.header(b"x-vpp-proxy-rule") == "9"
    assert created.header(b"x-vpp-proxy-check") == "identity_matches_token"
    assert created.header(b"x-vpp-proxy-upstream-status") == "201"
    assert created.header(b"content-type") == "application/json"
    body = created.json()
    assert set(body) == {
        "object", "type", "code", "message", "context", "live_mode", "time_created",
    }
    assert (body["object"], body["type"], body["code"]) == (
        "error", "api_error", "contract_violation")
    assert body["context"] == "vpp_sandbox.proxy" and body["live_mode"] is False
    message = body["message"]
    assert "upstream's 201 answer" in message
    assert "rule 9 (identity_matches_token) for participation vpp_" in message
    assert "--mode warn" in message


# -- the checks on every exchange ----------------------------------------------------------------


@pytest.mark.slow
def test_the_suite_through_the_proxy_in_front_of_the_sandbox_finds_nothing() -> None:
    proxy = _proxy(build(None))
    report = run_suites(_target(proxy), TINY)
    summary = proxy.finish()
    assert report.passed, report.render()
    assert proxy.tally.violations == 0, _printed(proxy)
    assert "PASSED: no violations" in summary
    assert all(proxy.tally.applied[rule] > 0 for rule in RULES), proxy.tally.applied
    assert proxy.tally.checked == proxy.tally.exchanges > 400


@pytest.mark.slow
@pytest.mark.parametrize("defect", DEFECTS, ids=lambda d: d.name)
def test_the_proxy_reports_each_planted_defect_by_its_rule(defect: Defect) -> None:
    proxy = _proxy(build(defect))
    target, ledger = _target(proxy), Ledger()
    # The suite's walk check of rule 15 has no single exchange; the proxy judges each page.
    expected = (defect.rule, PROXY_CHECK.get(defect.name, defect.check))
    for suite in SCRIPTED:  # the suite's traffic through the proxy, until the proxy names it
        run_suites(target, TINY, suites=[suite], ledger=ledger)
        if expected in proxy.tally.by_check:
            break
    tally = proxy.tally
    assert defect.rule in tally.broken, f"{defect.name}: proxy saw {dict(tally.broken)}"
    checks = {check for (rule, check) in tally.by_check if rule == defect.rule}
    assert expected[1] in checks, checks
    for violation in tally.examples[defect.rule]:
        assert violation.message.startswith(f"rule {defect.rule} ({violation.check}):")
        assert violation.curl.startswith("curl -X ")


class ExtraField(EachParticipation):
    """Participations carry a field the spec does not have (additionalProperties: false)."""

    def fix(self, p: dict[str, Any]) -> None:
        p["internal_score"] = 7


class DropsSecondItem(Rewriter):
    """List pages silently leave out their second item."""

    async def after(self, request: Request, answer: DefectAnswer) -> DefectAnswer:
        if request.path == VPP and answer.status == 200 and len(answer.data["data"]) > 2:
            del answer.data["data"][1]
        return answer


async def _create_on_device(proxy: Any, auth: tuple[str, str], device: str) -> str:
    body = json.loads(_create_body())
    body["device_id"] = device
    body["programme_id"] = "vpr_" + secrets.token_hex(12)  # one device, several programmes
    created = await call(proxy, "POST", VPP, body=json.dumps(body).encode(),
                         headers=[auth, ("Content-Type", "application/json")])
    assert created.status == 201
    pid: str = created.json()["id"]
    return pid


def test_a_response_outside_the_spec_is_reported_under_section_2() -> None:
    proxy = _proxy(ExtraField(build(None)))

    async def scenario() -> None:
        auth = ("Authorization", f"Bearer {await _token(proxy)}")
        await _create_on_device(proxy, auth, "dev_" + "1" * 24)

    asyncio.run(scenario())
    assert dict(proxy.tally.broken) == {"§2": 1}, _printed(proxy)
    (violation,) = proxy.tally.examples["§2"]
    assert violation.check == "response_matches_schema"
    assert "'internal_score' was unexpected" in violation.message


def test_a_page_missing_a_known_participation_is_reported() -> None:
    proxy = _proxy(DropsSecondItem(build(None)))
    device = "dev_" + "2" * 24

    async def scenario() -> None:
        auth = ("Authorization", f"Bearer {await _token(proxy)}")
        for _ in range(4):
            await _create_on_device(proxy, auth, device)
        await call(proxy, "GET", VPP, query=f"device_id={device}".encode(), headers=[auth])

    asyncio.run(scenario())
    assert dict(proxy.tally.broken) == {"15": 1}, _printed(proxy)
    (violation,) = proxy.tally.examples["15"]
    assert violation.check == "list_page_is_complete"
    assert "is missing from a page of 3 for limit 30" in violation.message


def test_pages_in_both_directions_from_the_sandbox_pass() -> None:
    proxy = _proxy(build(None))
    device = "dev_" + "3" * 24

    async def scenario() -> None:
        auth = ("Authorization", f"Bearer {await _token(proxy)}")
        for _ in range(5):
            await _create_on_device(proxy, auth, device)
        first = await call(proxy, "GET", VPP, query=f"device_id={device}&limit=2".encode(),
                           headers=[auth])
        ids = [p["id"] for p in first.json()["data"]]
        after = f"device_id={device}&limit=2&starting_after={ids[-1]}".encode()
        second = await call(proxy, "GET", VPP, query=after, headers=[auth])
        newest_of_second = second.json()["data"][0]["id"]
        before = f"device_id={device}&limit=5&ending_before={newest_of_second}".encode()
        back = await call(proxy, "GET", VPP, query=before, headers=[auth])
        assert [p["id"] for p in back.json()["data"]] == ids
        assert back.json()["has_more"] is False
        one_back = before.replace(b"limit=5", b"limit=1")  # newer ones remain beyond it
        nearest = await call(proxy, "GET", VPP, query=one_back, headers=[auth])
        assert [p["id"] for p in nearest.json()["data"]] == ids[1:]
        assert nearest.json()["has_more"] is True

    asyncio.run(scenario())
    assert proxy.tally.violations == 0, _printed(proxy)
    assert proxy.tally.applied["15"] == 4


def test_a_sandbox_reset_empties_what_the_proxy_knows_of_the_namespace() -> None:
    proxy = _proxy(build(None))

    async def scenario() -> None:
        auth = ("Authorization", f"Bearer {await _token(proxy)}")
        for i in range(3):
            body = json.loads(_create_body())
            body["device_id"] = f"dev_{i:024x}"
            created = await call(proxy, "POST", VPP, body=json.dumps(body).encode(),
                                 headers=[auth, ("Content-Type", "application/json")])
            assert created.status == 201
        assert (await call(proxy, "POST", "/_sandbox/reset", headers=[auth])).status == 200
        listed = await call(proxy, "GET", VPP, headers=[auth])
        assert listed.status == 200 and listed.json()["data"] == []

    asyncio.run(scenario())
    assert proxy.tally.violations == 0, _printed(proxy)


def test_one_namespace_is_forwarded_one_request_at_a_time() -> None:
    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        who = dict(scope["headers"]).get(b"authorization", b"-").decode()
        in_flight[who] = in_flight.get(who, 0) + 1
        peak[who] = max(peak.get(who, 0), in_flight[who])
        await asyncio.sleep(0.05)
        in_flight[who] -= 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    def bearer(account: str) -> str:
        claims = {"account_id": account, "live_mode": False, "exp": int(time.time()) + 600}
        return "Bearer " + jwt.encode(claims, "s" * 32, algorithm="HS256")

    proxy = _proxy(upstream)
    one, two = bearer("acc_one"), bearer("acc_two")

    async def scenario() -> None:
        await asyncio.gather(*(
            call(proxy, "GET", "/_sandbox/clock",
                 headers=[("Authorization", token)] if token else [])
            for token in [one] * 4 + [two] * 4 + ["Bearer opaque"] * 4 + [""] * 4
        ))  # fmt: skip

    started = time.monotonic()
    asyncio.run(scenario())
    # Each token in server order (a token is its own namespace until the upstream accepts it).
    assert peak[one] == 1 and peak[two] == 1 and peak["Bearer opaque"] == 1
    assert peak["-"] > 1  # no token: nothing to keep in order
    assert time.monotonic() - started < 0.05 * 8  # the namespaces went side by side


# -- bounds --------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_and_never_forwarded() -> None:
    tap = Tap(build(None))
    proxy = _proxy(tap, max_body_bytes=100)
    big = b'{"device_id": "' + b"x" * 200 + b'"}'

    async def scenario() -> list[Answer]:
        declared = await call(proxy, "POST", VPP, body=big, headers=[
            ("Content-Type", "application/json"), ("Content-Length", str(len(big)))])
        streamed = await call(proxy, "POST", VPP, body=big,
                              headers=[("Content-Type", "application/json")])
        return [declared, streamed]

    for answer in asyncio.run(scenario()):
        assert answer.status == 413 and answer.header(b"x-vpp-proxy") == "error"
        body = answer.json()
        assert body["object"] == "error" and body["code"] == "request_too_large"
        assert "100 bytes" in body["message"]
    assert tap.requests == []


def test_a_slow_upstream_is_a_504_and_a_dead_one_a_502() -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(5)

    proxy = _proxy(slow, timeout=0.2)
    started = time.monotonic()
    answer = asyncio.run(call(proxy, "GET", VPP))
    assert time.monotonic() - started < 3
    assert answer.status == 504 and answer.json()["code"] == "upstream_timeout"
    assert "within 0.2 s" in answer.json()["message"]

    # Requests of one namespace queue behind a hung one for no longer than the timeout.
    token = "Bearer " + jwt.encode(
        {"account_id": "acc_q", "live_mode": False, "exp": int(time.time()) + 600}, "q" * 32,
        algorithm="HS256")

    async def queued() -> list[Answer]:
        return list(await asyncio.gather(*(
            call(proxy, "GET", VPP, headers=[("Authorization", token)]) for _ in range(3))))

    started = time.monotonic()
    answers = asyncio.run(queued())
    assert time.monotonic() - started < 3
    assert [a.status for a in answers] == [504, 504, 504]
    assert any("one at a time" in a.json()["message"] for a in answers)

    dead = ContractProxy(ProxyOptions(f"http://127.0.0.1:{free_port()}"), out=io.StringIO())
    answer = asyncio.run(call(dead, "GET", VPP))
    assert answer.status == 502 and answer.json()["code"] == "upstream_unreachable"
    assert "Check --upstream" in answer.json()["message"]
    assert dead.tally.upstream_errors["unreachable"] == 1


def test_an_answer_over_the_limit_is_a_502() -> None:
    proxy = _proxy(build(None), max_response_bytes=50)
    answer = asyncio.run(call(proxy, "GET", "/openapi.json"))
    assert answer.status == 502 and answer.json()["code"] == "upstream_response_too_large"


def test_the_ledger_is_bounded() -> None:
    proxy = _proxy(build(None), max_participations=3)

    async def scenario() -> None:
        auth = ("Authorization", f"Bearer {await _token(proxy)}")
        for i in range(10):
            body = json.loads(_create_body())
            body["device_id"] = f"dev_{i:024x}"
            await call(proxy, "POST", VPP, body=json.dumps(body).encode(),
                       headers=[auth, ("Content-Type", "application/json")])
            await call(proxy, "GET", VPP, query=b"limit=3", headers=[auth])

    asyncio.run(scenario())
    # At least the 7 created beyond the bound are forgotten; more when a page shows a forgotten
    # one again (creates within one second are listed in id order, not creation order).
    evicted = proxy.ledger.bounded_objects.evicted
    assert len(proxy.ledger.objects) == 3 and evicted >= 7
    assert proxy.tally.violations == 0  # forgetting can only miss, never invent, a violation
    assert f"{evicted} participations forgotten" in proxy.finish()

    ledger = ProxyLedger(max_participations=2, max_tokens=2)
    for n in range(5):
        ledger.add_token(f"opaque-{n}", Identity(f"acc_{n}", False))
    # Kept by their hash: a token's size never counts.
    assert list(ledger.tokens) == [token_key("opaque-3"), token_key("opaque-4")]
    assert "opaque-4" in ledger.tokens and "opaque-2" not in ledger.tokens


def test_a_token_names_its_namespace_without_the_signing_key() -> None:
    now = time.time()
    claims = {"account_id": "acc_x", "live_mode": True, "exp": int(now) + 600}
    token = jwt.encode(claims, "a signing key the proxy never sees, 32+ bytes", algorithm="HS256")
    assert identity_of_token(token, now) == Identity("acc_x", True)
    expired = jwt.encode({**claims, "exp": int(now) - 3600}, "k" * 32, algorithm="HS256")
    assert identity_of_token(expired, now) is None  # rule 14 then expects a 401
    assert identity_of_token("not.a.jwt", now) is None
    ledger = ProxyLedger()
    assert ledger.identity_of({"Authorization": f"Bearer {token}"}) == Identity("acc_x", True)
    # An opaque token is known only from a login answered through the proxy.
    assert ledger.identity_of({"Authorization": "Bearer opaque"}) is None
    login = Exchange("GET", "/login", {}, {"Authorization": BASIC}, None, 200, {}, "", "u",
                     {"bearer_token": "opaque", "expires_in": 3600, "live_mode": False})
    ledger.observe(login)
    assert ledger.identity_of({"Authorization": "Bearer opaque"}) == Identity(
        FIRST.account_id, False)


def test_the_junit_report_has_a_case_per_rule(tmp_path: Path) -> None:
    junit = tmp_path / "proxy.xml"
    proxy = _proxy(LiveModeFlipped(build(None)), junit_xml=str(junit))

    async def scenario() -> None:
        token = await _token(proxy)
        await call(proxy, "POST", VPP, body=_create_body(), headers=[
            ("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")])

    asyncio.run(scenario())
    summary = proxy.finish()
    assert "2 exchanges, 2 answered by the upstream and checked" in summary
    assert "FAILED: 1 violation(s)" in summary
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == [f"rule {r}" for r in RULES]
    failure = cases["rule 9"].find("failure")
    assert failure is not None and "identity_matches_token" in (failure.text or "")
    assert "reproduce: curl -X POST" in (failure.text or "")
    assert cases["rule 15"].find("skipped") is not None  # no list went through
    assert cases["rule 14"].find("skipped") is not None  # every request had a token
    passed = cases["rule 1"]
    assert passed.find("failure") is None and passed.find("skipped") is None
    assert suite.get("failures") == "1"


def test_a_bad_upstream_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy", "--upstream", "ftp://example.com"]) == 2
    assert "is not an http(s) URL" in capsys.readouterr().err


# -- the real commands ---------------------------------------------------------------------------
# A full `vpp-sandbox test --profile default` through the real `vpp-sandbox proxy` in front of a
# served sandbox finds nothing: tests/test_contract_deployments.py (its single-process SQLite
# deployment is reached through the proxy).

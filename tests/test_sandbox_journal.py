"""The request journal: what each namespace's requests got, bounded, and the access log."""

from __future__ import annotations

import re
import tracemalloc
from typing import Any

import pytest

from tests.sandbox_client import ACCOUNT_A, ACCOUNT_B, make_sandbox, step
from tests.serve_process import served
from vpp_sandbox.mock_server.journal import FIELD_CHARS, Entry, Journal
from vpp_sandbox.mock_server.settings import Settings

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _journal(sb: Any, limit: int = 100, **who: Any) -> dict[str, Any]:
    r = sb.client.get("/_sandbox/requests", params={"limit": limit}, headers=sb.headers(**who))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_journal_records_each_answer_and_the_error_it_gave() -> None:
    sb = make_sandbox()
    created = sb.create()
    pid = created.json()["id"]
    illegal = sb.update(pid, step("ACTIVE"))
    malformed = sb.client.post(
        "/vpp-participations", json={"device_id": 7}, headers=sb.headers()
    )
    missing = sb.get("vpp_" + "0" * 24)
    listed = sb.list(limit=2)
    statuses = [r.status_code for r in (created, illegal, malformed, missing, listed)]
    assert statuses == [201, 409, 400, 404, 200]

    body = _journal(sb)
    assert body["object"] == "list" and body["has_more"] is False and body["capacity"] == 100
    entries = body["data"]
    # Newest first; the login that made the token is the namespace's first request.
    assert [e["status"] for e in entries] == [200, 404, 400, 409, 201, 200]
    assert entries[-1]["path"] == "/login"
    assert [e["id"] for e in entries[:5]] == [
        r.headers["x-request-id"] for r in (listed, missing, malformed, illegal, created)
    ]
    lst, nf, bad, move, new, _ = entries
    assert (lst["method"], lst["path"], lst["query"]) == ("GET", "/vpp-participations", "limit=2")
    assert new["error"] is None and lst["error"] is None
    assert move["path"] == f"/vpp-participations/{pid}"
    assert move["error"]["code"] == "invalid_state_transition"
    assert "Allowed next states: AWAITING_CUSTOMER_CONSENT" in move["error"]["message"]
    assert bad["error"]["code"] == "invalid_request_body"
    assert bad["error"]["message"] == malformed.json()["message"]
    assert nf["error"]["code"] == "participation_not_found"
    for e in entries:
        assert e["object"] == "sandbox_request" and TIME.match(e["time"])
        assert e["latency_ms"] > 0
    assert [e["time"] for e in entries] == sorted((e["time"] for e in entries), reverse=True)


def test_faults_are_journaled_and_a_client_request_id_is_kept() -> None:
    sb = make_sandbox()
    forced = sb.client.get(
        "/vpp-participations",
        headers={**sb.headers(), "X-Sandbox-Fault": "internal_error", "X-Request-Id": "ci-42.7"},
    )
    assert forced.status_code == 500 and forced.headers["x-request-id"] == "ci-42.7"
    odd = sb.client.get("/vpp-participations", headers={**sb.headers(), "X-Request-Id": "a b"})
    assert odd.headers["x-request-id"].startswith("req_")  # not a sensible id: ours instead
    first, second = _journal(sb, limit=2)["data"]
    assert first["id"] == odd.headers["x-request-id"] and first["status"] == 200
    assert second["id"] == "ci-42.7" and second["error"]["code"] == "internal_error"


def test_limit_and_has_more_and_reading_is_not_journaled() -> None:
    sb = make_sandbox()
    for _ in range(4):
        sb.list()
    two = _journal(sb, limit=2)
    assert len(two["data"]) == 2 and two["has_more"] is True
    everything = _journal(sb)
    assert len(everything["data"]) == 5 and everything["has_more"] is False  # login + 4 lists
    assert all(e["path"] != "/_sandbox/requests" for e in everything["data"])
    r = sb.client.get("/_sandbox/requests", params={"limit": 0}, headers=sb.headers())
    assert r.status_code == 400 and r.json()["code"] == "invalid_parameter"
    assert sb.client.get("/_sandbox/requests").status_code == 401


def test_another_namespace_never_reads_your_journal() -> None:
    sb = make_sandbox()
    mine = sb.create()
    theirs_token = sb.headers(ACCOUNT_B)  # B logs in: B's journal has that login only
    live = sb.list(ACCOUNT_A, live=True)  # the same account's other mode is another namespace
    anonymous = sb.client.get("/vpp-participations")
    assert anonymous.status_code == 401 and theirs_token
    guess = sb.client.get("/login", auth=(ACCOUNT_A, "sk_test_a_wrong_guess"))
    assert guess.status_code == 401
    ids_a = {e["id"] for e in _journal(sb)["data"]}
    ids_b = {e["id"] for e in _journal(sb, account_id=ACCOUNT_B)["data"]}
    ids_live = {e["id"] for e in _journal(sb, account_id=ACCOUNT_A, live=True)["data"]}
    assert mine.headers["x-request-id"] in ids_a
    assert live.headers["x-request-id"] in ids_live
    assert not ids_a & ids_b and not ids_a & ids_live and not ids_b & ids_live
    assert len(ids_b) == 1  # B's own login, nothing of A's
    everyone = ids_a | ids_b | ids_live
    assert anonymous.headers["x-request-id"] not in everyone  # no token: nobody's journal
    assert guess.headers["x-request-id"] not in everyone  # a wrong key is not A's request


def test_the_journal_stays_bounded_per_namespace() -> None:
    sb = make_sandbox(journal_size=5)
    for _ in range(40):
        sb.list()
    body = _journal(sb)
    assert len(body["data"]) == 5 and body["has_more"] is False and body["capacity"] == 5
    assert len(Journal(size=0).recent(("acc_x", False), 5)[0]) == 0


def test_a_long_query_string_is_kept_cut_to_its_bound() -> None:
    sb = make_sandbox()
    long = "x" * 30_000
    r = sb.client.get(f"/vpp-participations?limit=5&{long}=1", headers=sb.headers())
    assert r.status_code == 400
    entry = _journal(sb, limit=1)["data"][0]
    assert entry["query"].startswith("limit=5&xxx") and len(entry["query"]) < FIELD_CHARS + 40
    cut = len("limit=5&") + 30_002 - FIELD_CHARS
    assert entry["query"].endswith(f"... ({cut} more characters)")
    assert len(entry["error"]["message"]) <= FIELD_CHARS + 40


def test_the_journal_holds_its_bytes_whatever_the_requests_carry() -> None:
    """256 namespaces x 100 requests with 30 KB query strings took a server from 72 to 826 MB;
    here 40 x 50 with a bound of 1 MB (the journal's own objects, measured)."""
    journal = Journal(50, 1_000_000)
    query = "q=" + "x" * 30_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(40):
            for i in range(50):
                journal.record((f"acc_{n}", False), _entry(f"{n}-{i}", (query + " ")[:-1]))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1_500_000, held
    kept, _ = journal.recent(("acc_39", False), 100)
    assert kept and kept[0].request_id == "39-49"  # the newest requests are there


def test_one_tenant_with_400_accounts_does_not_evict_the_others() -> None:
    """With the default bounds: 10 tenants' namespaces, then 400 namespaces of one tenant
    filling their rings (more than the bound holds). Eviction takes from whoever holds the
    most: the many namespaces give up their oldest requests, the others keep theirs."""
    journal = Journal()
    others = [(f"acc_other{n}", n % 2 == 0) for n in range(10)]
    for ns in others:
        for i in range(30):
            journal.record(ns, _entry(f"{ns[0]}-{i}"))
    for n in range(400):
        for i in range(100):
            journal.record((f"acc_many{n:03d}", False), _entry(f"{n}-{i}"))
    for ns in others:
        kept, _ = journal.recent(ns, 100)
        assert [e.request_id for e in kept] == [f"{ns[0]}-{i}" for i in reversed(range(30))]
    assert journal.bytes <= journal.max_bytes
    assert journal.recent(("acc_many399", False), 1)[0][0].request_id == "399-99"
    many = [len(journal.recent((f"acc_many{n:03d}", False), 100)[0]) for n in range(400)]
    assert min(many) >= 70 and sum(many) < 400 * 100  # trimmed evenly, none dropped


def _entry(request_id: str, query: str = "") -> Entry:
    return Entry(request_id, 0.0, "GET", "/vpp-participations", query, 200, 1.0)


def test_the_access_log_prints_a_line_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    sb = make_sandbox(access_log=True)
    pid = sb.create().json()["id"]
    sb.update(pid, step("ACTIVE"))
    sb.client.get("/nowhere")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4, lines  # login, create, update, unknown route
    login, create, update, nowhere = lines
    assert f"{ACCOUNT_A}/test \"GET /login\" 200 " in login
    shape = r"^\S+Z acc_\S+/test \"POST /vpp-participations\" 201 [\d.]+ms req_\w+$"
    assert re.match(shape, create), create
    assert f"\"POST /vpp-participations/{pid}\" 409 " in update
    assert "invalid_state_transition: Cannot move" in update
    assert nowhere.split()[1] == "-" and "404" in nowhere and "route_not_found" in nowhere
    quiet = make_sandbox()
    quiet.create()
    assert capsys.readouterr().out == ""


def test_the_access_log_setting_comes_from_the_flag_or_the_environment() -> None:
    assert Settings.from_env({}).access_log is False
    assert Settings.from_env({"VPP_ACCESS_LOG": "1"}).access_log is True
    assert Settings.from_env({"VPP_ACCESS_LOG": "off"}).access_log is False
    assert Settings.from_env({}, access_log=True).access_log is True
    assert Settings.from_env({"VPP_JOURNAL_SIZE": "7"}).journal_size == 7


@pytest.mark.slow
def test_serve_access_log_prints_lines_over_http() -> None:
    import requests

    with served("--db", ":memory:", "--access-log") as server:
        answer = requests.get(server.base_url + "/vpp-participations", timeout=5)
        assert answer.status_code == 401
    line = "\"GET /vpp-participations\" 401 "
    assert any(line in row and "authentication_required" in row
               for row in server.output.splitlines()), server.output

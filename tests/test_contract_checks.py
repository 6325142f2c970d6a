"""Unit tests of the suite's own oracle and checks (no server)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpp_sandbox.contract_tests import checks, model
from vpp_sandbox.contract_tests.findings import REGISTRY
from vpp_sandbox.contract_tests.ledger import Identity, Ledger, Observation
from vpp_sandbox.contract_tests.target import Exchange

IDENTITY = Identity("acc_" + "1" * 24, False)


def _exchange(method: str, path: str, status: int, data: Any, body: Any = None) -> Exchange:
    return Exchange(
        method=method,
        path=path,
        query={},
        headers={"Authorization": "Bearer t"},
        body=body,
        status=status,
        response_headers={"content-type": "application/json"},
        text="",
        url="http://testserver" + path,
        data=data,
    )


def _entry(state: str, status: str, at: str | None = "2026-11-03T09:15:00Z") -> dict[str, Any]:
    e: dict[str, Any] = {"state": state, "status": status, "description": "x",
                         "suspension_reasons": []}
    if status == "PENDING":
        e["expected_at"] = "2026-11-04T09:15:00Z"
    else:
        e["occurred_at"] = at
    return e


def _participation(**changes: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "object": "vpp-participation",
        "id": "vpp_" + "a" * 24,
        "reference_id": None,
        "live_mode": False,
        "device_id": "dev_" + "d" * 24,
        "location_id": "loc_" + "e" * 24,
        "account_id": IDENTITY.account_id,
        "current_state": "AWAITING_CUSTOMER_CONSENT",
        "control_active": False,
        "telemetry_active": False,
        "suspension_reasons": [],
        "provider": {"id": "prv_" + "f" * 24, "provider_display_name": "Leap",
                     "logo_url": "https://example.com/logo.png"},
        "programme": {"id": "vpr_" + "0" * 24, "programme_display_name": "Powershare",
                      "learn_more_url": "https://example.com/more"},
        "participation_state": [
            _entry("ENROLMENT_REQUESTED", "COMPLETE"),
            _entry("AWAITING_CUSTOMER_CONSENT", "IN_PROGRESS"),
            _entry("AWAITING_DEVICE_TELEMETRY", "PENDING"),
        ],
        "time_created": "2026-11-03T09:15:00Z",
        "time_updated": "2026-11-03T09:15:00Z",
    }
    p.update(changes)
    return p


def _observe(p: Any, status: int = 200) -> Observation:
    path = "/vpp-participations/vpp_" + "a" * 24
    return Observation(_exchange("GET", path, status, p), IDENTITY)


def test_a_correct_object_passes_every_check() -> None:
    for check in checks.CHECKS:
        check(_observe(_participation()))


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"current_state": "ACTIVE", "control_active": True}, "current_state_matches_timeline"),
        ({"control_active": True}, "control_active_iff_active"),
        ({"suspension_reasons": ["OPERATOR_REQUEST"]}, "suspension_reasons_match_state"),
        ({"live_mode": True}, "identity_matches_token"),
        ({"id": "vpp_XYZ"}, "identity_matches_token"),
        ({"time_created": "2026-11-03T09:16:00Z"}, "entry_times_within_object_times"),
        ({"time_updated": "yesterday"}, "entry_times_within_object_times"),
        ({"telemetry_active": True}, "telemetry_active_follows_timeline"),
        ({"time_created": "2026-11-03T09:14:00Z"}, "object_times_are_exact"),
        ({"location_id": "loc_X"}, "response_matches_schema"),
    ],
)
def test_each_check_names_its_rule(changes: dict[str, Any], check: str) -> None:
    func = next(c for c in checks.CHECKS if c.__name__ == check)
    with pytest.raises(AssertionError, match=rf"^rule {checks.RULE_OF[check]} \({check}\): "
                       r"participation "):
        func(_observe(_participation(**changes)))


def test_every_check_has_a_docstring_citing_its_rule() -> None:
    for name, info in REGISTRY.items():
        cited = f"Rule {info.rule}" if info.rule.isdigit() else info.rule
        assert info.doc.startswith(cited) or (
            info.rule == "§7" and info.doc.startswith("Section 7")
        ), (name, info.doc)
        assert checks.RULE_OF[name] == info.rule


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.sampled_from((*model.STATES, "IN_PROGRESS", "PENDING", "2026-11-03T09:15:00Z")),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(
        st.sampled_from(["id", "object", "state", "status", "participation_state", "data",
                         "current_state", "occurred_at", "expected_at", "time_created",
                         "suspension_reasons", "has_more", "live_mode", "code"]),
        inner,
        max_size=6,
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=_json,
    status=st.sampled_from([200, 201, 400, 401, 404, 409, 500]),
    method=st.sampled_from(["GET", "POST"]),
    path=st.sampled_from(["/vpp-participations", "/vpp-participations/vpp_" + "b" * 24, "/login"]),
    body=_json,
)
def test_checks_only_ever_raise_assertion_error(
    data: Any, status: int, method: str, path: str, body: Any
) -> None:
    """Trap T13: anything but AssertionError would abort a Schemathesis run."""
    ledger = Ledger()
    ledger.add_token("t", IDENTITY)
    ledger.observe(_exchange("POST", "/vpp-participations", 201, _participation(
        id="vpp_" + "b" * 24)))
    obs = ledger.observe(_exchange(method, path, status, data, body))
    for check in checks.CHECKS:
        with contextlib.suppress(AssertionError):
            check(obs)


@pytest.mark.parametrize(
    ("history", "records", "status"),
    [
        (["ENROLMENT_REQUESTED"], [("AWAITING_CUSTOMER_CONSENT", "IN_PROGRESS")], 200),
        (["ENROLMENT_REQUESTED"], [("ACTIVE", "IN_PROGRESS")], 409),
        (["ENROLMENT_REQUESTED"], [("ENROLMENT_REQUESTED", "IN_PROGRESS")], 200),
        (["ENROLMENT_REQUESTED", "FAILED"], [("FAILED", "IN_PROGRESS")], 200),
        (["ENROLMENT_REQUESTED", "FAILED"], [("ACTIVE", "IN_PROGRESS")], 409),
        (["ACTIVE"], [("SUSPENDED", "IN_PROGRESS")], 400),
        (["ACTIVE", "UNENROLMENT_REQUESTED"], [("ACTIVE", "IN_PROGRESS")], 200),
        (["SUSPENDED", "UNENROLMENT_REQUESTED"], [("SUSPENDED", "IN_PROGRESS")], 200),
        (["ACTIVE", "UNENROLMENT_REQUESTED"], [("SUSPENDED", "IN_PROGRESS")], 409),
        (["REGISTERED"], [("ACTIVE", "COMPLETE"), ("SUSPENDED", "IN_PROGRESS")], 400),
        (["ENROLMENT_REQUESTED"], [("AWAITING_CUSTOMER_CONSENT", "COMPLETE"),
                                   ("ACTIVE", "IN_PROGRESS")], 409),
        (["ENROLMENT_REQUESTED"], [("AWAITING_CUSTOMER_CONSENT", "IN_PROGRESS"),
                                   ("AWAITING_DEVICE_TELEMETRY", "IN_PROGRESS")], 400),
        (["ENROLMENT_REQUESTED"], [("ACTIVE", "PENDING"),
                                   ("AWAITING_CUSTOMER_CONSENT", "IN_PROGRESS")], 400),
        (["ENROLMENT_REQUESTED"], [("AWAITING_CUSTOMER_CONSENT", "COMPLETE")], 400),
    ],
)
def test_the_oracle_judges_updates(
    history: list[str], records: list[tuple[str, str]], status: int
) -> None:
    timeline = [_entry(s, "COMPLETE") for s in history]
    timeline[-1]["status"] = "IN_PROGRESS"
    if history[-1] == "SUSPENDED":
        timeline[-1]["suspension_reasons"] = ["OPERATOR_REQUEST"]
    if len(history) > 1 and history[-2] == "SUSPENDED":
        timeline[-2]["suspension_reasons"] = ["OPERATOR_REQUEST"]
    verdict = model.judge_update(
        {"participation_state": timeline}, [{"state": s, "status": st_} for s, st_ in records]
    )
    assert verdict.status == status, verdict


def test_the_oracle_agrees_with_the_contract_table_size() -> None:
    edges = sum(len(v) for v in model.TRANSITIONS.values())
    assert set(model.TRANSITIONS) == set(model.STATES) and len(model.STATES) == 15
    assert edges == 30  # contract section 4, without the history-dependent return edge


def test_the_ci_job_in_docs_runs_the_suite_and_keeps_the_junit_report() -> None:
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "docs" / "github-actions-contract.yml"
    job = yaml.safe_load(path.read_text())["jobs"]["contract"]
    run = next(s for s in job["steps"] if s.get("name") == "Run the contract suite")
    assert run["shell"] == "bash" and "vpp-sandbox test" in run["run"]
    assert "--junit-xml reports/vpp-contract.xml" in run["run"]
    assert "--html reports/vpp-contract.html" in run["run"]
    assert "secrets.VPP_STAGING_URL" in run["env"]["VPP_STAGING_URL"]
    keep = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert keep["if"] == "always()" and keep["with"]["path"] == "reports/"


def _answer(status: int, data: Any, response_headers: dict[str, str],
            method: str = "GET", path: str = "/vpp-participations/vpp_" + "a" * 24,
            headers: dict[str, str] | None = None) -> Observation:
    ex = _exchange(method, path, status, data)
    ex.response_headers = response_headers
    if headers is not None:
        ex.headers = headers
    return Observation(ex, IDENTITY)


def test_the_schema_check_holds_the_media_type_and_headers_the_spec_documents() -> None:
    check = checks.response_matches_schema
    error = {"object": "error", "type": "rate_limit", "code": "rate_limited", "message": "m",
             "context": "c", "live_mode": False, "time_created": "2026-11-03T09:15:00Z"}
    json_type = {"content-type": "application/json; charset=utf-8"}
    assert check(_answer(200, _participation(), json_type)) is True
    assert check(_answer(429, error, {**json_type, "retry-after": "2"})) is True
    for status, data, headers, wrong in [
        (200, _participation(), {"content-type": "text/plain"}, "'text/plain'"),
        (200, _participation(), {}, "has no Content-Type"),
        (200, _participation(), {"content-type": "application"}, "'application'"),
        (429, error, {**json_type, "retry-after": "soon"}, "header retry-after: 'soon'"),
        (429, error, {**json_type, "retry-after": "0"}, "header retry-after: '0'"),
    ]:
        with pytest.raises(AssertionError, match=r"^rule §2 \(response_matches_schema\)") as got:
            check(_answer(status, data, headers))
        assert wrong in str(got.value), str(got.value)
    # A request in a media type the operation does not take (GET /login takes no body) may be
    # refused in any way §7 allows; answered, its answer is held to the spec as any other.
    probe = {"Authorization": "Basic x", "Content-Type": "multipart/form-data"}
    refused = _answer(400, error, json_type, path="/login", headers=probe)
    assert check(refused) is False
    with pytest.raises(AssertionError, match="bearer_token"):
        check(_answer(200, {"expires_in": 3600}, json_type, path="/login", headers=probe))


def test_a_schema_problem_quotes_a_short_value_and_only_names_a_long_one() -> None:
    """A page of 8,000 items broke maxItems with a message quoting all of it (9.5 MB, made
    while the GIL was held); a short value is still quoted as it was."""
    from vpp_sandbox.contract_tests.schemas import response_problem

    data = [_participation(id=f"vpp_{n:024x}") for n in range(8000)]
    page = {"object": "list", "url": "/vpp-participations", "has_more": False, "data": data}
    problem = response_problem("listVppParticipations", 200, page)
    assert problem == (
        "data: the value (too long to quote) has more than 100 items"
    ), (problem or "")[:200]
    short = {**page, "data": data[:2], "has_more": "no"}
    assert response_problem("listVppParticipations", 200, short) == (
        'has_more: "no" is not of type "boolean"'
    )
    assert response_problem("listVppParticipations", 200, {**page, "data": []}) is None

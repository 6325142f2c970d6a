"""Structured findings, coverage and the JUnit report of the contract suite (no parsing of
messages anywhere; what was not checked is SKIPPED, never PASS)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.contract_defects import Answer, Defect, Request, Rewriter
from tests.defect_runs import SEED, target
from vpp_sandbox.contract_tests import checks, model
from vpp_sandbox.contract_tests.findings import REGISTRY, Violation, broken, register
from vpp_sandbox.contract_tests.junit import junit_xml
from vpp_sandbox.contract_tests.ledger import Identity, Observation
from vpp_sandbox.contract_tests.report import Report
from vpp_sandbox.contract_tests.runner import options_for, run_suites
from vpp_sandbox.contract_tests.target import Exchange

CONTRACT_TESTS = Path(__file__).resolve().parents[1] / "contract_tests"


def _exchange(status: int, data: Any) -> Exchange:
    return Exchange("GET", "/vpp-participations/vpp_" + "a" * 24, {}, {}, None, status,
                    {"content-type": "application/json"}, "", "http://testserver/x", data)


def test_a_broken_rule_is_an_assertion_error_carrying_its_fields() -> None:
    p = {"object": "vpp-participation", "id": "vpp_" + "a" * 24, "current_state": "SUSPENDED",
         "control_active": True}
    ex = _exchange(200, p)
    with pytest.raises(Violation) as caught:
        checks.control_active_iff_active(Observation(ex, Identity("acc_x", False)))
    v = caught.value
    assert isinstance(v, AssertionError)  # Schemathesis reports it as a failed check (ST901)
    assert (v.rule, v.check, v.participation) == ("7", "control_active_iff_active", p["id"])
    assert v.exchange is ex and "SUSPENDED" in v.message
    assert str(v).startswith(f"rule 7 (control_active_iff_active): participation {p['id']}: ")


def test_adding_a_rule_is_one_function_whose_rule_comes_from_its_registration() -> None:
    @register("§6")
    def sandbox_says_hello(answer: Exchange) -> bool:
        """§6: a made-up check for this test."""
        if answer.status != 200:
            raise broken("-", f"answered {answer.status}")
        return True

    try:
        assert REGISTRY["sandbox_says_hello"].rule == "§6"
        assert sandbox_says_hello(_exchange(200, {})) is True
        with pytest.raises(Violation) as caught:
            sandbox_says_hello(_exchange(500, {}))
        assert (caught.value.rule, caught.value.check) == ("§6", "sandbox_says_hello")
    finally:
        del REGISTRY["sandbox_says_hello"]


def test_a_check_that_crashes_is_reported_as_a_violation() -> None:
    # Trap T13: anything but an AssertionError would abort a Schemathesis run.
    @register("§7")
    def sandbox_crashes(answer: Exchange) -> bool:
        """§7: a made-up check with a bug."""
        return bool(answer.data["missing"])

    try:
        with pytest.raises(Violation, match="could not evaluate the response: KeyError"):
            sandbox_crashes(_exchange(200, {}))
    finally:
        del REGISTRY["sandbox_crashes"]


def test_no_message_is_parsed_and_no_rule_prefix_is_written_by_hand() -> None:
    renderers = ("report.py", "junit.py", "html_report.py", "failures.py", "digest.py",
                 "diagnosis.py")
    for name in (*renderers, "conformance.py", "runner.py"):
        text = (CONTRACT_TESTS / name).read_text()
        assert "import re\n" not in text and "from_message" not in text, name
    # Only the Violation writes "rule N (check)"; suites name checks, the registry the rule.
    for path in CONTRACT_TESTS.glob("*.py"):
        if path.name in ("findings.py", *renderers):
            continue
        assert not re.search(r"""f?["']rule [0-9§{]""", path.read_text()), path.name


def test_every_check_is_registered_once_with_a_known_rule() -> None:
    per_response = {c.__name__ for c in checks.CHECKS}
    assert per_response == {n for n, i in REGISTRY.items() if i.per_response}
    assert len(REGISTRY) >= 50
    assert {i.rule for i in REGISTRY.values()} >= {str(n) for n in range(1, 16)} | {
        "§1", "§2", "§4", "§6", "§7"}


def test_the_rules_page_lists_every_check_with_its_rule() -> None:
    page = (CONTRACT_TESTS.parent / "docs" / "contract-rules.md").read_text()
    rows = re.findall(r"^\| (\S+) \| `(\w+)` \| (?:every exchange|a suite's script) \|", page,
                      re.M)
    assert {name: rule for rule, name in rows} == {n: i.rule for n, i in REGISTRY.items()}


# -- coverage -------------------------------------------------------------------------------------


def test_default_takes_every_edge_and_tries_every_illegal_move() -> None:
    report = run_suites(target(None), options_for("default", seed=SEED), ["transitions"])
    assert report.passed, report.render()
    summary = report.summary
    assert (summary.edges_taken, summary.edges_total) == (36, 36)
    assert (summary.illegal_tried, summary.illegal_total) == (181, 181)
    assert set(report.coverage.edges) == set(model.LEGAL_EDGES)
    assert "legal edges never taken" not in report.render()


def test_quick_takes_every_edge_and_tries_every_illegal_move() -> None:
    runs = [run_suites(target(None), options_for("quick", seed=s), ["transitions"]) for s in (1, 2)]
    assert all(r.passed for r in runs), runs[0].render()
    assert all(r.summary.edges_taken == 36 for r in runs)
    tried = [set(r.coverage.illegal) for r in runs]
    assert tried[0] == tried[1] == set(model.ILLEGAL_MOVES)  # every class, not a sample
    assert "illegal moves never tried" not in runs[0].render()
    # §6 in every state: the duplicate enrolment was judged once per state reached.
    judged = runs[0].coverage.exercised
    assert judged[("transitions", "duplicate_enrolment_refused")] == 12  # the non-terminal ones
    assert judged[("transitions", "terminal_frees_the_device")] == 3
    assert not runs[0].coverage.skipped


def test_status_codes_are_counted_per_operation() -> None:
    report = run_suites(target(None), options_for("quick", seed=SEED), ["security"])
    statuses = report.coverage.statuses
    assert statuses[("createVppParticipation", 201)] >= 1
    assert statuses[("listVppParticipations", 401)] >= 6
    assert statuses[("createBearerToken", 401)] == 1


def test_min_coverage_fails_a_run_that_exercised_too_little() -> None:
    options = options_for("quick", seed=SEED)
    low = run_suites(target(None), options, ["security"], min_coverage=50)
    assert low.failures == [] and not low.passed
    assert low.summary.percent < 50
    assert "coverage below --min-coverage 50%" in low.render()
    suite = _root(low).find("testsuite[@name='coverage']")
    assert suite is not None and suite.get("failures") == "1"
    enough = run_suites(target(None), options, ["security"], min_coverage=low.summary.percent)
    assert enough.passed


class NeverMoves(Rewriter):
    """A target that answers every update 200 with the participation unchanged."""

    async def rewrite(self, request: Request) -> Any:
        if request.method == "POST" and request.path.count("/") == 2:
            # A body the mock refuses (409) or ignores (a resubmission): nothing moves.
            return {"participation_state": [{"state": "ENROLMENT_REQUESTED",
                                              "status": "IN_PROGRESS"}]}
        return request.body

    async def after(self, request: Request, answer: Answer) -> Answer:
        if request.method == "POST" and request.path.count("/") == 2:
            auth = {"authorization": request.headers.get("authorization", "")}
            current = await self.call("GET", request.path, auth)
            return Answer(200, current.data, current.headers)
        return answer


def test_a_walk_on_a_target_that_never_moves_does_not_pass() -> None:
    report = run_suites(target(Defect("never_moves", "§4", "walk_took_legal_moves", NeverMoves)),
                        options_for("quick", seed=SEED), ["lifecycle"])
    assert not report.passed
    assert "walk_took_legal_moves" in report.checks
    assert report.summary.edges_taken == 0
    failure = next(f for f in report.failures if f.check == "walk_took_legal_moves")
    assert "legal moves were not taken" in failure.message


# -- JUnit ----------------------------------------------------------------------------------------


def _root(report: Report) -> ET.Element:
    root = junit_xml(report).getroot()
    assert root is not None
    return root


def _skip_message(case: ET.Element) -> str:
    skipped = case.find("skipped")
    assert skipped is not None, case.get("name")
    return skipped.get("message") or ""


def _cases(root: ET.Element, suite: str) -> dict[str, ET.Element]:
    node = root.find(f"testsuite[@name='{suite}']")
    assert node is not None, suite
    return {c.get("name", ""): c for c in node.findall("testcase")}


def test_junit_has_findings_a_tally_per_rule_and_skips_with_reasons() -> None:
    plain = target(None)
    no_extras = type(plain)(plain.credentials, app=plain.app)  # no second account, no key
    report: Report = run_suites(no_extras, options_for("quick", seed=SEED),
                                ["cross-request", "security", "isolation"])
    root = _root(report)
    assert [s.get("name") for s in root.findall("testsuite")] == [
        "findings", "advice", "rules", "suites", "coverage"]
    assert _cases(root, "findings") == {}
    rules = _cases(root, "rules")
    assert "rule 12: illegal updates are 409 and change nothing" in rules
    assert all(c.find("failure") is None for c in rules.values())
    suites = _cases(root, "suites")
    expired = suites["security: rule 14: expired_token_rejected"].find("skipped")
    assert expired is not None and "VPP_CONTRACT_JWT_SECRET" in expired.get("message", "")
    isolation = {n: c for n, c in suites.items() if n.startswith("isolation")}
    assert len(isolation) > 3 and all(c.find("skipped") is not None for c in isolation.values())
    assert all("--second-account-id" in _skip_message(c) for c in isolation.values())
    coverage = _cases(root, "coverage")
    never = coverage["rule 13: foreign_id_not_found"].find("skipped")
    assert never is not None and never.get("message", "").startswith("not checked: ")
    assert int(root.get("skipped", "0")) >= len(isolation) + 1


def test_junit_has_one_failed_case_per_finding_under_its_root_cause() -> None:
    from tests.contract_defects import DEFECTS

    defect = next(d for d in DEFECTS if d.name == "control_active_while_suspended")
    report = run_suites(target(defect), options_for("quick", seed=SEED),
                        ["cross-request", "transitions"])
    root = _root(report)
    findings = _cases(root, "findings")
    assert len(findings) == len(report.findings) > 0
    assert all(c.find("failure") is not None for c in findings.values())
    named = [c for n, c in findings.items() if "control_active_iff_active" in n]
    assert named, list(findings)
    failure = named[0].find("failure")
    assert failure is not None and failure.get("type") == "control_active_iff_active"
    assert failure.get("message", "").startswith(
        "Participation objects break the contract's invariants: ")
    assert "reproduce: curl " in (failure.text or "") and "cases: " in (failure.text or "")
    rules = _cases(root, "rules")
    assert rules["rule 7: control_active exactly when ACTIVE"].find("failure") is not None
    assert rules["rule 1: exactly one IN_PROGRESS entry, and it is current_state"].find(
        "failure") is None


class NoCurrentState(Rewriter):
    """Every participation answered without current_state (issue 19: one defect that was
    reported under rules 1, 10, 12 and §2)."""

    async def after(self, request: Request, answer: Answer) -> Answer:
        if answer.status < 300 and isinstance(answer.data, dict):
            items = answer.data.get("data") if "data" in answer.data else [answer.data]
            for p in items if isinstance(items, list) else []:
                if isinstance(p, dict):
                    p.pop("current_state", None)
        return answer


def test_one_missing_field_is_one_root_cause() -> None:
    defect = Defect("no_current_state", "§2", "response_matches_schema", NoCurrentState)
    report = run_suites(target(defect), options_for("quick", seed=SEED), ["cross-request"])
    assert len({f.rule for f in report.findings}) > 1  # several rules break on those answers
    diagnosis = report.diagnosis()
    assert [d.cause.key for d in diagnosis] == ["schema"], report.render()
    assert '"current_state" is a required property' in report.render()

"""The contract suite catches each deliberately broken implementation and names the rule."""

from __future__ import annotations

import pytest

from tests.contract_defects import DEFECTS, SECOND, Defect, build
from vpp_sandbox.contract_tests.ledger import Ledger
from vpp_sandbox.contract_tests.report import Options, Report
from vpp_sandbox.contract_tests.runner import run_suites
from vpp_sandbox.contract_tests.target import Credentials, Target
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

# Small but complete: every suite runs, with few generated examples per operation.
TINY = Options(
    max_examples=3, stateful_examples=3, stateful_steps=4, walks=4, walk_steps=8, seed=20261125
)


def _target(defect: Defect | None) -> Target:
    first = DEFAULT_ACCOUNT[0]
    return Target(
        Credentials(first.account_id, first.api_key),
        app=build(defect),
        second=Credentials(SECOND.account_id, SECOND.api_key),
    )


def test_defects_break_distinct_rules() -> None:
    assert len(DEFECTS) >= 12
    assert len({d.rule for d in DEFECTS}) >= 12
    assert len({d.name for d in DEFECTS}) == len(DEFECTS)


# Every defect is caught by the scripted suites of both profiles (tests/test_contract_profiles.py);
# the defects visible on any single answer are also caught by the Schemathesis phases alone.
ON_EVERY_ANSWER = {
    "pending_tail_illegal", "pending_expected_before_current", "time_created_after_first_entry",
    "live_mode_not_matching_key", "auth_not_enforced", "error_body_not_error_format",
    "server_error_on_valid_request",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "defect", [d for d in DEFECTS if d.name in ON_EVERY_ANSWER], ids=lambda d: d.name
)
def test_the_schemathesis_phases_alone_catch_defects_on_every_answer(defect: Defect) -> None:
    # The link-driven phase only where the conformance phases (run first) missed it: one run,
    # one server, one ledger, stopped where the defect is caught.
    target, ledger = _target(defect), Ledger()
    report = run_suites(target, TINY, suites=["conformance"], ledger=ledger)
    if defect.check not in report.checks:
        report.suites += run_suites(target, TINY, suites=["stateful"], ledger=ledger).suites
    _assert_caught(defect, report)


def _assert_caught(defect: Defect, report: Report) -> None:
    assert not report.passed, f"{defect.name} went unnoticed"
    assert defect.rule in report.rules, report.render()
    assert defect.check in report.checks, report.render()
    named = [f for f in report.failures if f.check == defect.check]
    assert all(f.rule == defect.rule and f"rule {defect.rule}" in f.message for f in named)
    # A Schemathesis failure of ours carries the Violation itself: rule, exchange, reproduction.
    assert any(f.exchange is not None and f.curl.startswith("curl ") for f in named)

"""The contract suite catches each deliberately broken implementation and names the rule."""

from __future__ import annotations

import pytest

from contract_tests.report import Options
from contract_tests.runner import run_suites
from contract_tests.target import Credentials, Target
from mock_server.settings import DEFAULT_ACCOUNT
from tests.contract_defects import DEFECTS, SECOND, Defect, build

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


def test_the_real_mock_passes_every_suite() -> None:
    report = run_suites(_target(None), TINY)
    assert report.passed, report.render()
    assert [s.name for s in report.suites] == [
        "conformance", "stateful", "lifecycle", "cross-request", "security", "isolation",
        "pagination",
    ]
    assert all(s.cases > 0 for s in report.suites)


def test_defects_break_distinct_rules() -> None:
    assert len(DEFECTS) >= 12
    assert len({d.rule for d in DEFECTS}) >= 12
    assert len({d.name for d in DEFECTS}) == len(DEFECTS)


@pytest.mark.parametrize("defect", DEFECTS, ids=lambda d: d.name)
def test_the_suite_catches_the_defect_and_names_its_rule(defect: Defect) -> None:
    report = run_suites(_target(defect), TINY)
    assert not report.passed, f"{defect.name} went unnoticed"
    assert defect.rule in report.rules, report.render()
    assert defect.check in report.checks, report.render()
    named = [f for f in report.failures if f.check == defect.check]
    assert all(f"rule {defect.rule}" in f.message for f in named)
    assert any(f.curl.startswith("curl ") for f in report.failures), "no reproduction given"

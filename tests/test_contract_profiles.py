"""Which profile catches which planted defect: `default` and `quick` every one (their rule cases
are the same deterministic scripts). The table in docs/coverage.md must say the same."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.contract_defects import Defect
from tests.defect_runs import ALL_DEFECTS, QUICK_MISSES, SEED, caught, first_catch, target
from vpp_sandbox.contract_tests.runner import SUITES, options_for, run_suites

DOC = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["quick", "default"])
def test_the_real_mock_passes_every_suite_of_the_profile(profile: str) -> None:
    report = run_suites(target(None), options_for(profile, seed=SEED), profile=profile)
    assert report.passed, report.render()
    assert [s.name for s in report.suites] == list(SUITES)
    assert all(s.cases > 0 and not s.skipped for s in report.suites)
    summary = report.summary
    assert summary.edges_taken == summary.edges_total == 36
    assert summary.illegal_tried == summary.illegal_total == 181
    # Given a second account and the signing key, only the 429 check cannot be made.
    assert set(report.not_made()) == {"rate_limit_answer_is_documented"}


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["quick", "default"])
@pytest.mark.parametrize("defect", ALL_DEFECTS, ids=lambda d: d.name)
def test_the_profile_catches_the_defect_and_names_its_rule(defect: Defect, profile: str) -> None:
    report = first_catch(defect, profile)  # the whole run where it misses the defect
    expected = profile == "default" or defect.name not in QUICK_MISSES
    assert caught(defect, report) is expected, report.render()
    if expected:
        named = [f for f in report.failures if f.check == defect.check]
        assert all(f.rule == defect.rule and f"rule {defect.rule} (" in f.message for f in named)
        assert any(f.exchange is not None and f.curl.startswith("curl ") for f in named), (
            "the failure carries no exchange or reproduction"
        )


def test_quick_misses_no_planted_defect() -> None:
    assert len(ALL_DEFECTS) >= 46
    assert len({d.name for d in ALL_DEFECTS}) == len(ALL_DEFECTS)
    assert not QUICK_MISSES  # every rule case is deterministic, in quick as in default


def test_the_docs_table_matches_the_defects() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\S+) \| `(\w+)` \| (\S+) \| (\S+) \|$", DOC.read_text(),
                      re.M)
    documented = {name: (rule, check, quick, default) for name, rule, check, quick, default in rows}
    expected = {
        d.name: (d.rule, d.check, "no" if d.name in QUICK_MISSES else "yes", "yes")
        for d in ALL_DEFECTS
    }
    assert documented == expected

"""Running the contract suite's profiles against the planted defects (the table in
docs/coverage.md, checked by tests/test_contract_profiles.py and written by
bench/contract_coverage.py)."""

from __future__ import annotations

from tests.contract_defects import DEFECTS, JWT_SECRET, SECOND, Defect, build
from tests.planted_defects import PLANTED
from vpp_sandbox.contract_tests.ledger import Ledger
from vpp_sandbox.contract_tests.report import Report
from vpp_sandbox.contract_tests.runner import options_for, run_suites
from vpp_sandbox.contract_tests.target import Credentials, Target
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

__all__ = [
    "ALL_DEFECTS",
    "QUICK_MISSES",
    "SCRIPTED",
    "SEED",
    "caught",
    "first_catch",
    "run",
    "target",
]

ALL_DEFECTS: tuple[Defect, ...] = (*DEFECTS, *PLANTED)
# The deterministic suites of every profile. The generated ones (conformance, stateful,
# lifecycle) can only add findings, so a defect these catch is caught by the whole profile.
SCRIPTED = ("transitions", "semantics", "cross-request", "security", "isolation", "pagination")
SEED = 20261125
# quick tries every illegal move and every rule case, as default does (issue 19): it misses none.
QUICK_MISSES: frozenset[str] = frozenset()


def target(defect: Defect | None) -> Target:
    """The mock with `defect`, a second account, and the mock's signing key (as a provider
    testing its own staging would give it), so the expired-token check is made."""
    first = DEFAULT_ACCOUNT[0]
    return Target(
        Credentials(first.account_id, first.api_key),
        app=build(defect),
        second=Credentials(SECOND.account_id, SECOND.api_key),
        jwt_secret=JWT_SECRET,
    )


def run(defect: Defect | None, profile: str) -> Report:
    return run_suites(target(defect), options_for(profile, seed=SEED), SCRIPTED, profile=profile)


def first_catch(defect: Defect, profile: str) -> Report:
    """`run`, stopped after the first suite that catches `defect`.

    The suites run one by one in the run's order, on one server, with one ledger, options and
    seed: up to where it stops, this is the whole run, so its catch is the run's. A defect the
    profile misses takes every suite, as `run` does.
    """
    options = options_for(profile, seed=SEED)
    server, ledger = target(defect), Ledger()
    whole = Report(seed=options.seed, coverage=ledger.coverage, profile=profile,
                   target=server.base_url)
    for suite in SCRIPTED:
        whole.suites += run_suites(server, options, [suite], profile=profile,
                                   ledger=ledger).suites
        if caught(defect, whole):
            break
    return whole


def caught(defect: Defect, report: Report) -> bool:
    """The run failed, naming the defect's rule through the defect's check."""
    return any(f.rule == defect.rule and f.check == defect.check for f in report.failures)

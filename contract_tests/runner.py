"""`vpp-sandbox test`: run every suite against a target and report, exit 0 only when all pass.

The suites run in-process here rather than through a nested pytest: the Schemathesis engine
drives the conformance and link-driven phases, Hypothesis drives the lifecycle walk, and the
scripted suites are plain functions. All of them share one Ledger, so a rule broken in any
suite is reported with the same check names, and `run_suites` can be handed an ASGI app by
our own tests without spawning anything.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import requests

from vpp_sandbox.contract_tests.conformance import run_conformance, run_stateful
from vpp_sandbox.contract_tests.html_report import write_html
from vpp_sandbox.contract_tests.junit import write_junit
from vpp_sandbox.contract_tests.ledger import Ledger
from vpp_sandbox.contract_tests.lists import run_pagination
from vpp_sandbox.contract_tests.report import PROFILES, Options, Report, SuiteResult
from vpp_sandbox.contract_tests.semantics import run_semantics
from vpp_sandbox.contract_tests.session import Session
from vpp_sandbox.contract_tests.suites import run_cross_request, run_isolation, run_security
from vpp_sandbox.contract_tests.target import Credentials, Target
from vpp_sandbox.contract_tests.transitions import run_transitions
from vpp_sandbox.contract_tests.walk import run_walk

__all__ = ["SUITES", "options_for", "run", "run_suites"]

Suite = Callable[[Session, Options], SuiteResult]

SUITES: dict[str, Suite] = {
    "conformance": run_conformance,
    "stateful": run_stateful,
    "lifecycle": run_walk,
    "transitions": run_transitions,
    "semantics": run_semantics,
    "cross-request": run_cross_request,
    "security": run_security,
    "isolation": run_isolation,
    "pagination": run_pagination,
}


def options_for(
    profile: str = "default", *, seed: int | None = None, max_examples: int | None = None
) -> Options:
    """The profile's options; a seed is always chosen (and printed) so any run can be replayed."""
    options = PROFILES[profile]
    if max_examples is not None:
        options = replace(options, max_examples=max_examples)
    return replace(options, seed=seed if seed is not None else random.randrange(2**31))


def run_suites(
    target: Target,
    options: Options,
    suites: Sequence[str] | None = None,
    *,
    profile: str = "",
    min_coverage: float | None = None,
    ledger: Ledger | None = None,
) -> Report:
    """Run the named suites (all by default) and return what they found and covered. Calls
    given one `ledger` (what the checks have seen) continue one run suite by suite."""
    ledger = ledger if ledger is not None else Ledger()
    report = Report(
        seed=options.seed,
        coverage=ledger.coverage,
        profile=profile,
        target=target.base_url,
        min_coverage=min_coverage,
    )
    for name in suites or list(SUITES):
        started = time.monotonic()
        with Session(target, ledger, suite=name) as session:
            try:
                result = SUITES[name](session, options)
            except Exception as exc:  # a dead server or a bug: report it, run the other suites
                session.error(f"{name}_aborted", f"{type(exc).__name__}: {exc}")
                result = SuiteResult(name, cases=session.calls, failures=list(session.failures))
            # Every failed judgement is kept: the report groups them into findings, and the
            # diagnosis needs each answer a cause was found on.
            result.seconds = result.seconds or time.monotonic() - started
        report.suites.append(result)
    return report


def run(args: argparse.Namespace) -> int:
    """Entry point of `vpp-sandbox test` (arguments parsed in vpp_sandbox.cli)."""
    second = None
    if bool(args.second_account_id) != bool(args.second_api_key):
        print("give both --second-account-id and --second-api-key, or neither", file=sys.stderr)
        return 2
    if args.second_account_id:
        second = Credentials(args.second_account_id, args.second_api_key)
    target = Target(
        Credentials(args.account_id, args.api_key),
        base_url=args.base_url,
        second=second,
        jwt_secret=os.environ.get("VPP_CONTRACT_JWT_SECRET") or None,
    )
    options = options_for(args.profile, seed=args.seed, max_examples=args.max_examples)
    if args.min_coverage is not None and not 0 <= args.min_coverage <= 100:
        print("--min-coverage is a percentage from 0 to 100", file=sys.stderr)
        return 2
    print(
        f"VPP contract suite: {target.base_url} · profile {args.profile} · seed {options.seed}",
        flush=True,
    )
    try:
        with Session(target) as session:
            for creds in (target.credentials, target.second):
                if creds is not None:
                    session.token(creds)
    except requests.RequestException as exc:
        print(f"cannot reach {target.base_url}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the credentials do not log in: nothing else can be tested
        print(str(exc), file=sys.stderr)
        return 2
    report = run_suites(
        target, options, profile=args.profile, min_coverage=args.min_coverage
    )
    print(report.render())
    if args.junit_xml:
        write_junit(report, args.junit_xml)
        print(f"JUnit report: {args.junit_xml}")
    if args.html:
        write_html(report, args.html)
        print(f"HTML report: {args.html}")
    if not report.passed:
        print(f"replay with: --seed {options.seed}")
    return 0 if report.passed else 1

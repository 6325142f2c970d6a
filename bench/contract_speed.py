"""Speed of the contract suite: test cases per second and wall time of each profile.

Runs every suite against the in-process mock (no sockets), one profile after the other, and
prints a table. No assertions: the targets (quick < 15 s, default < 60 s on 2 cores) are
read off the output. Usage: python bench/contract_speed.py [quick default thorough] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profiles", nargs="*", default=["quick", "default"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

    from vpp_sandbox.contract_tests.runner import options_for, run_suites
    from vpp_sandbox.contract_tests.target import Credentials, Target
    from vpp_sandbox.mock_server.app import create_app
    from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Account, Settings

    second = Account("acc_" + "5e" * 12, "sk_test_contractsecondaccount")
    first = DEFAULT_ACCOUNT[0]
    print(f"{'profile':<10} {'suite':<14} {'cases':>7} {'seconds':>8} {'cases/s':>8}")
    for profile in args.profiles:
        app = create_app(Settings(db=":memory:", accounts=(*DEFAULT_ACCOUNT, second)))
        target = Target(
            Credentials(first.account_id, first.api_key),
            app=app,
            second=Credentials(second.account_id, second.api_key),
        )
        started = time.monotonic()
        report = run_suites(target, options_for(profile, seed=args.seed))
        wall = time.monotonic() - started
        for s in report.suites:
            rate = s.cases / s.seconds if s.seconds else 0.0
            print(f"{profile:<10} {s.name:<14} {s.cases:7} {s.seconds:8.1f} {rate:8.0f}")
        cases = sum(s.cases for s in report.suites)
        verdict = "passed" if report.passed else f"{len(report.failures)} failures"
        print(
            f"{profile:<10} {'TOTAL':<14} {cases:7} {wall:8.1f} {cases / wall:8.0f}  ({verdict})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

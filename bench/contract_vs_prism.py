"""What `vpp-sandbox test --profile quick` reports against Stoplight Prism serving our spec (a
stateless mock: it stores nothing and checks no token): lines printed, findings, root causes.

Run after `make install` (npm installs Prism into bench/.prism on first use, as vs_prism.py):
  .venv/bin/python bench/contract_vs_prism.py [--seed N] [--show]
docs/coverage.md ("Reports") quotes its figures. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

from harness import ROOT
from vs_prism import ensure_prism, start_prism

ACCOUNT = ("acc_661677911f2197045e6cf1b1", "sk_test_vppsandbox4f3c9a2b7d1e8f60")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--show", action="store_true", help="print the report itself too")
    args = parser.parse_args(argv)
    from vpp_sandbox.contract_tests.runner import options_for, run_suites
    from vpp_sandbox.contract_tests.target import Credentials, Target

    binary = ensure_prism()
    with tempfile.TemporaryDirectory() as tmp:
        prism, base = start_prism(binary, ROOT / "openapi" / "vpp-participations.yaml",
                                  Path(tmp), "prism", "/vpp-participations")
        try:
            target = Target(Credentials(*ACCOUNT), base_url=base)
            with contextlib.redirect_stderr(io.StringIO()):
                report = run_suites(target, options_for("quick", seed=args.seed),
                                    profile="quick")
        finally:
            prism.stop()
    text = report.render()
    if args.show:
        print(text)
    diagnosis = report.diagnosis()
    print(f"quick against Prism, seed {args.seed}: {len(text.splitlines()) + 2} lines printed "
          f"(with the run's first and last line), {len(report.findings)} findings, "
          f"{len(report.failures)} failed cases, {len(diagnosis)} root causes, "
          f"{len(report.advice_findings)} advice")
    for i, d in enumerate(diagnosis, start=1):
        print(f"  {i}. {d.headline()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

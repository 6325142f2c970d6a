"""Coverage of the contract suite's profiles against the sandbox, and which profile catches
which planted defect: the tables of docs/coverage.md (and the check list of
docs/contract-rules.md), printed, or written into those files with --write.

Runs each profile (every suite) against the in-process sandbox with a second credential and
without the signing key (as `make contract` does), then the profiles' scripted suites against
each planted defect of tests/ (as tests/test_contract_profiles.py does).
Usage: python bench/contract_coverage.py [--write] [--seed N] [--no-defects]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _profiles(seed: int) -> str:
    from tests.contract_defects import build
    from vpp_sandbox.contract_tests.runner import options_for, run_suites
    from vpp_sandbox.contract_tests.target import Credentials, Target
    from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

    test_key, live_key = DEFAULT_ACCOUNT[0], DEFAULT_ACCOUNT[1]
    rows, details = [], []
    for profile in ("quick", "default"):
        target = Target(
            Credentials(test_key.account_id, test_key.api_key),
            app=build(None),
            second=Credentials(live_key.account_id, live_key.api_key),
        )
        started = time.monotonic()
        report = run_suites(target, options_for(profile, seed=seed), profile=profile)
        seconds = time.monotonic() - started
        s = report.summary
        verdict = "passed" if report.passed else f"{len(report.failures)} failures"
        rows.append(
            f"| `{profile}` | {sum(x.cases for x in report.suites)} | {seconds:.1f} | "
            f"**{s.percent:.1f}%** | {s.edges_taken}/{s.edges_total} | "
            f"{s.illegal_tried}/{s.illegal_total} | {s.checks_exercised}/{s.checks_total} | "
            f"{verdict} |"
        )
        by_rule = " · ".join(f"{r}: {n}" for r, n in report.exercised_by_rule().items())
        details.append(f"- `{profile}`, checks judged per rule: {by_rule}")
        details += [f"- `{profile}` did not make `{name}`: {why}"
                    for name, why in report.not_made().items()]
        statuses: dict[str, list[str]] = {}
        for (op, status), n in sorted(report.coverage.statuses.items()):
            statuses.setdefault(op, []).append(f"{status}: {n}")
        details += [f"- `{profile}`, `{op}` answered {', '.join(seen)}"
                    for op, seen in statuses.items() if op != "other"]
    head = (
        "| profile | cases | seconds | coverage | legal edges | illegal moves | checks | "
        "result |\n|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows, "", *details])


def _defects() -> str:
    from tests.defect_runs import ALL_DEFECTS, caught, run

    rows = ["| defect | rule | check that names it | quick | default |", "|---|---|---|---|---|"]
    for defect in ALL_DEFECTS:
        marks = ["yes" if caught(defect, run(defect, p)) else "no" for p in ("quick", "default")]
        rows.append(f"| `{defect.name}` | {defect.rule} | `{defect.check}` | {marks[0]} | "
                    f"{marks[1]} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def _checks() -> str:
    from vpp_sandbox.contract_tests import checks  # noqa: F401  (registers every check)
    from vpp_sandbox.contract_tests.findings import REGISTRY, RULE_TITLES, rule_order

    rows = ["| rule | check | runs on | what it asserts |", "|---|---|---|---|"]
    for info in sorted(REGISTRY.values(), key=lambda i: (rule_order(i.rule), i.name)):
        where = "every exchange" if info.per_response else "a suite's script"
        rows.append(f"| {info.rule} | `{info.name}` | {where} | {info.doc} |")
    titles = ", ".join(f"{r} ({t})" for r, t in RULE_TITLES.items())
    return "\n".join(rows) + f"\n\nRules and sections: {titles}."


def _replace(path: Path, name: str, text: str) -> None:
    """Put `text` between the file's `<!-- generated:NAME -->` and `<!-- /generated -->`."""
    content = path.read_text()
    pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated -->)", re.S)
    if not pattern.search(content):
        raise SystemExit(f"{path} has no <!-- generated:{name} --> block")
    path.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), content))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="update the docs in place")
    parser.add_argument("--no-defects", action="store_true", help="skip the defect table")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    sections = {"profiles": _profiles(args.seed), "checks": _checks()}
    if not args.no_defects:
        sections["defects"] = _defects()
    for name, text in sections.items():
        print(f"\n## {name}\n{text}")
    if args.write:
        coverage, rules = ROOT / "docs" / "coverage.md", ROOT / "docs" / "contract-rules.md"
        _replace(coverage, "profiles", sections["profiles"])
        if "defects" in sections:
            _replace(coverage, "defects", sections["defects"])
        _replace(rules, "checks", sections["checks"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run options, results of the suites, and the text report.

Failures are built from the checks' Violations (rule, check, participation, exchange, cause),
never by reading their messages, and grouped into findings (`digest`) under their root causes
(`diagnosis`). The text report starts with the diagnosis, lists each finding once (with the
suites and cases where it was met and one reproduction), then the advice, the coverage, and
ends with the per-rule tally. `junit.py` and `html_report.py` render the same Report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vpp_sandbox.contract_tests import model
from vpp_sandbox.contract_tests.coverage import Coverage, Summary
from vpp_sandbox.contract_tests.diagnosis import Diagnosis, diagnose
from vpp_sandbox.contract_tests.digest import Finding, group
from vpp_sandbox.contract_tests.failures import Failure
from vpp_sandbox.contract_tests.findings import REGISTRY, RULE_TITLES, rule_order

__all__ = ["PROFILES", "Failure", "Options", "Report", "SuiteResult"]


# The console cuts a finding's message here; the JUnit and HTML reports give it whole.
MESSAGE_WIDTH = 160


@dataclass(frozen=True, slots=True)
class Options:
    """How hard to test: examples per operation, stateful scenarios, walks, scripted cases."""

    max_examples: int = 100
    stateful_examples: int = 40
    stateful_steps: int = 8
    walks: int = 60
    walk_steps: int = 15
    page_items: int = 7
    # The transitions suite: illegal moves tried from each state (None: every one).
    illegal_per_state: int | None = None
    # Participations of one device for the list-parameter cases (default and large limits).
    big_page: int = 100
    seed: int | None = None


# quick: pre-commit (a few seconds); default: CI (< 60 s); thorough: nightly.
PROFILES: dict[str, Options] = {
    "quick": Options(
        max_examples=5,
        stateful_examples=5,
        stateful_steps=4,
        walks=5,
        walk_steps=8,
        # Every illegal move, as in default: each is one request, and a sample missed some.
        illegal_per_state=None,
        big_page=32,
    ),
    "default": Options(),
    "thorough": Options(
        max_examples=1000,
        stateful_examples=300,
        stateful_steps=12,
        walks=400,
        walk_steps=30,
        page_items=23,
    ),
}


@dataclass(slots=True)
class SuiteResult:
    name: str
    cases: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return not any(not f.advice for f in self.failures)


@dataclass(slots=True)
class Report:
    suites: list[SuiteResult] = field(default_factory=list)
    seed: int | None = None
    coverage: Coverage = field(default_factory=Coverage)
    profile: str = ""
    target: str = ""
    min_coverage: float | None = None

    @property
    def failures(self) -> list[Failure]:
        """Every failed judgement that fails the run (advice excluded)."""
        return [f for s in self.suites for f in s.failures if not f.advice]

    @property
    def advice(self) -> list[Failure]:
        """Judgements of choices the spec leaves open: reported, never failing the run."""
        return [f for s in self.suites for f in s.failures if f.advice]

    @property
    def findings(self) -> list[Finding]:
        """The failures grouped: one Finding per distinct breach."""
        return group(self.failures)

    @property
    def advice_findings(self) -> list[Finding]:
        return group(self.advice)

    def diagnosis(self) -> list[Diagnosis]:
        """The findings under their root causes, most fundamental first."""
        return diagnose(self.findings)

    def tally(self) -> list[tuple[str, int, int, int]]:
        """Per rule: (rule, findings, failed cases, judgements made), every rule in order."""
        findings = self.findings
        judged = self.exercised_by_rule()
        rules = sorted(set(RULE_TITLES) | {f.rule for f in findings}, key=rule_order)
        return [
            (rule, sum(1 for f in findings if f.rule == rule),
             sum(f.cases for f in findings if f.rule == rule), judged.get(rule, 0))
            for rule in rules
        ]

    @property
    def summary(self) -> Summary:
        return self.coverage.summary(len(REGISTRY))

    @property
    def below_min_coverage(self) -> bool:
        return self.min_coverage is not None and self.summary.percent < self.min_coverage

    @property
    def passed(self) -> bool:
        return not self.failures and not self.below_min_coverage

    @property
    def rules(self) -> set[str]:
        return {f.rule for f in self.failures}

    @property
    def checks(self) -> set[str]:
        return {f.check for f in self.failures}

    def not_made(self) -> dict[str, str]:
        """Every registered check this run never exercised, with the reason."""
        done = self.coverage.checks_exercised()
        given = {check: reason for (_, check), reason in self.coverage.skipped.items()}
        out = {}
        for name, info in sorted(REGISTRY.items(), key=lambda i: (rule_order(i[1].rule), i[0])):
            if name in done:
                continue
            out[name] = given.get(name, info.idle)
        return out

    def exercised_by_rule(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (_, check), n in self.coverage.exercised.items():
            rule = REGISTRY[check].rule if check in REGISTRY else "-"
            counts[rule] = counts.get(rule, 0) + n
        return dict(sorted(counts.items(), key=lambda i: rule_order(i[0])))

    def render(self) -> str:
        """The diagnosis first, then the suites, the findings, the advice, the coverage, and
        last the per-rule tally and the verdict."""
        diagnosis, findings_lines = self._render_findings()
        lines = list(diagnosis)
        for s in self.suites:
            state = "SKIP" if s.skipped else ("PASS" if s.passed else "FAIL")
            extra = f" ({s.skipped})" if s.skipped else ""
            lines.append(f"{state:4} {s.name:<15} {s.cases:5} cases {s.seconds:6.1f} s{extra}")
        lines += findings_lines
        lines += self._render_coverage()
        lines += self._render_tally()
        total = sum(s.cases for s in self.suites)
        findings = self.findings
        verdict = "PASSED" if self.passed else (
            f"FAILED: {len(findings)} finding(s), {len(self.failures)} failed case(s)")
        if self.below_min_coverage:
            verdict += f", coverage below --min-coverage {self.min_coverage:g}%"
        lines.append(f"{verdict} · {total} cases · seed {self.seed}")
        return "\n".join(lines)

    def _render_findings(self) -> tuple[list[str], list[str]]:
        """The diagnosis (one line per root cause); then every finding under its cause (one
        reproduction per cause here, every finding's in the JUnit and HTML reports) and the
        advice."""
        diagnosis = self.diagnosis()
        head: list[str] = []
        lines: list[str] = []
        if diagnosis:
            findings = sum(len(d.findings) for d in diagnosis)
            head.append(f"Diagnosis: {len(diagnosis)} root cause(s) behind {findings} "
                        f"finding(s), {len(self.failures)} failed case(s):")
            for i, d in enumerate(diagnosis, start=1):
                head.append(f"  {i}. {d.headline()}: {d.cause.why}")
            lines.append("Findings, by root cause (each once, with where it was met):")
            for i, d in enumerate(diagnosis, start=1):
                lines.append(f" {i}. {d.cause.title}")
                for j, f in enumerate(d.findings):
                    lines.append(f.render(width=MESSAGE_WIDTH, reproduce=j == 0))
        advice = self.advice_findings
        if advice:
            lines.append(f"Advice ({len(advice)}): the sandbox's own choices, which the spec "
                         "leaves open (never a failure):")
            lines += [f.render(width=MESSAGE_WIDTH, reproduce=False) for f in advice]
        return head, lines

    def _render_tally(self) -> list[str]:
        """Every rule that broke or was never judged on a line; the rules that held, on one."""
        lines = ["Per rule: findings, failed cases, judgements made"]
        held = []
        for rule, findings, cases, judged in self.tally():
            if findings or not judged:
                mark = "FAIL" if findings else "not judged"
                title = RULE_TITLES.get(rule, "the suite itself")[:50]
                lines.append(f"  {rule:>3} {title:<50} {findings:3} {cases:5} {judged:6}  {mark}")
            else:
                held.append(f"{rule} ({judged})")
        if held:
            lines.append(f"  held, with their judgements: {', '.join(held)}")
        return lines

    def _render_coverage(self) -> list[str]:
        cov = self.coverage
        lines = [self.summary.render()]
        untaken = [f"{a}->{b}" for a, b in model.LEGAL_EDGES if (a, b) not in cov.edges]
        if untaken:
            listed = f": {', '.join(untaken)}" if len(untaken) <= 6 else " (--html lists them)"
            lines.append(f"  legal edges never taken: {len(untaken)}{listed}")
        untried = [m for m in model.ILLEGAL_MOVES if m not in cov.illegal]
        if untried:
            states = sorted({a for a, _ in untried}, key=model.STATES.index)
            where = ", ".join(states) if len(states) <= 4 else f"{len(states)} states"
            lines.append(f"  illegal moves never tried: {len(untried)}, from {where}")
        reasons: dict[str, list[str]] = {}
        for name, reason in self.not_made().items():
            reasons.setdefault(reason, []).append(f"{name} ({REGISTRY[name].rule})")
        for reason, names in reasons.items():
            lines.append(f"  not checked: {', '.join(names)}: {reason}")
        # Checks made, but not in every case their suite meant to try: the untried ones.
        made = cov.checks_exercised()
        for (suite, check), reason in sorted(cov.skipped.items()):
            if check in made:
                lines.append(f"  untried cases of {check} ({suite}): {reason}")
        operations: dict[str, list[str]] = {}
        for (op, status), n in sorted(cov.statuses.items()):
            operations.setdefault(op, []).append(f"{status}x{n}")
        for op, seen in operations.items():
            lines.append(f"  {op}: {' '.join(seen)}")
        return lines

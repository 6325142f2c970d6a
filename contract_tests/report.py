"""Run options, failures and results of the suites, and the text report.

Failures are built from the checks' Violations (rule, check, participation, exchange), never by
reading their messages. `junit.py` and `html_report.py` render the same Report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vpp_sandbox.contract_tests import model
from vpp_sandbox.contract_tests.coverage import Coverage, Summary
from vpp_sandbox.contract_tests.findings import REGISTRY, Violation, rule_order
from vpp_sandbox.contract_tests.target import Exchange

__all__ = ["PROFILES", "Failure", "Options", "Report", "SuiteResult"]


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
        illegal_per_state=4,
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


@dataclass(frozen=True, slots=True)
class Failure:
    """One finding: which rule broke, by which check, on which participation, the exchange and
    how to reproduce it. `kind` is "rule" (ours), "schemathesis" (a built-in check) or "error"
    (the suite could not run)."""

    suite: str
    rule: str
    check: str
    message: str
    curl: str = ""
    participation: str = "-"
    exchange: Exchange | None = None
    kind: str = "rule"

    @classmethod
    def of(cls, suite: str, violation: Violation, curl: str = "") -> Failure:
        return cls(
            suite,
            violation.rule,
            violation.check,
            str(violation),
            curl,
            violation.participation,
            violation.exchange,
        )

    @property
    def label(self) -> str:
        return {"rule": f"rule {self.rule}", "schemathesis": "Schemathesis check"}.get(
            self.kind, "suite error"
        )

    def render(self) -> str:
        text = f"[{self.suite}] {self.label} · {self.check} · participation {self.participation}\n"
        text += "    " + self.message.strip().replace("\n", "\n    ")
        if self.curl:
            text += "\n    reproduce: " + self.curl.replace("\n", " ")
        return text


@dataclass(slots=True)
class SuiteResult:
    name: str
    cases: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


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
        return [f for s in self.suites for f in s.failures]

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
        lines = []
        for s in self.suites:
            state = "SKIP" if s.skipped else ("PASS" if s.passed else "FAIL")
            extra = f" ({s.skipped})" if s.skipped else ""
            lines.append(f"{state:4} {s.name:<15} {s.cases:5} cases {s.seconds:6.1f} s{extra}")
        seen: set[tuple[str, str, str]] = set()
        for f in self.failures:
            key = (f.suite, f.check, f.participation)
            if key not in seen:
                seen.add(key)
                lines.append(f.render())
        lines += self._render_coverage()
        total = sum(s.cases for s in self.suites)
        verdict = "PASSED" if self.passed else f"FAILED: {len(self.failures)} failure(s)"
        if self.below_min_coverage:
            verdict += f", coverage below --min-coverage {self.min_coverage:g}%"
        lines.append(f"{verdict} · {total} cases · seed {self.seed}")
        return "\n".join(lines)

    def _render_coverage(self) -> list[str]:
        cov = self.coverage
        lines = [self.summary.render()]
        rules = " ".join(f"{r}x{n}" for r, n in self.exercised_by_rule().items())
        lines.append(f"  rules exercised (checks judged): {rules or 'none'}")
        untaken = [f"{a}->{b}" for a, b in model.LEGAL_EDGES if (a, b) not in cov.edges]
        if untaken:
            lines.append(f"  legal edges never taken ({len(untaken)}): {', '.join(untaken)}")
        untried = [m for m in model.ILLEGAL_MOVES if m not in cov.illegal]
        if untried:
            states = sorted({a for a, _ in untried}, key=model.STATES.index)
            lines.append(f"  illegal moves never tried: {len(untried)}, from {', '.join(states)}")
        for name, reason in self.not_made().items():
            lines.append(f"  not checked: {name} (rule {REGISTRY[name].rule}): {reason}")
        operations: dict[str, list[str]] = {}
        for (op, status), n in sorted(cov.statuses.items()):
            operations.setdefault(op, []).append(f"{status}x{n}")
        for op, seen in operations.items():
            lines.append(f"  {op}: {' '.join(seen)}")
        return lines

"""Run options, failures and results of the suites, and their text and JUnit renderings."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PROFILES", "Failure", "Options", "Report", "SuiteResult"]


@dataclass(frozen=True, slots=True)
class Options:
    """How hard to test: examples per operation, stateful scenarios, lifecycle walks."""

    max_examples: int = 100
    stateful_examples: int = 40
    stateful_steps: int = 8
    walks: int = 60
    walk_steps: int = 15
    page_items: int = 7
    seed: int | None = None


# quick: pre-commit (< 15 s); default: CI (< 60 s); thorough: nightly.
PROFILES: dict[str, Options] = {
    "quick": Options(
        max_examples=5, stateful_examples=5, stateful_steps=4, walks=5, walk_steps=8
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

_RULE = re.compile(r"^rule (\S+) \(([\w-]+)\)")
_PARTICIPATION = re.compile(r"participation (vpp_[0-9a-f]{24})")


@dataclass(frozen=True, slots=True)
class Failure:
    """One broken rule: which, by which check, on which participation, and how to reproduce."""

    suite: str
    rule: str
    check: str
    message: str
    curl: str = ""
    participation: str = "-"

    @classmethod
    def from_message(cls, suite: str, check: str, message: str, curl: str = "") -> Failure:
        """Parse ``rule N (check): participation vpp_…: …`` messages; others keep `check`."""
        found = _RULE.match(message)
        rule, name = (found.group(1), found.group(2)) if found else ("-", check)
        pid = _PARTICIPATION.search(message)
        return cls(suite, rule, name, message, curl, pid.group(1) if pid else "-")

    def render(self) -> str:
        label = f"rule {self.rule}" if self.rule != "-" else "Schemathesis check"
        if self.check.endswith("_aborted") or self.check == "engine_error":
            label = "suite error"
        text = f"[{self.suite}] {label} · {self.check} · participation {self.participation}\n"
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

    @property
    def failures(self) -> list[Failure]:
        return [f for s in self.suites for f in s.failures]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def rules(self) -> set[str]:
        return {f.rule for f in self.failures}

    @property
    def checks(self) -> set[str]:
        return {f.check for f in self.failures}

    def render(self) -> str:
        lines = []
        for s in self.suites:
            state = "SKIP" if s.skipped else ("PASS" if s.passed else "FAIL")
            extra = f" ({s.skipped})" if s.skipped else ""
            lines.append(f"{state:4} {s.name:<12} {s.cases:5} cases {s.seconds:6.1f} s{extra}")
        seen: set[tuple[str, str, str]] = set()
        for f in self.failures:
            key = (f.suite, f.check, f.participation)
            if key in seen:
                continue
            seen.add(key)
            lines.append(f.render())
        total = sum(s.cases for s in self.suites)
        verdict = "PASSED" if self.passed else f"FAILED: {len(self.failures)} failure(s)"
        lines.append(f"{verdict} · {total} cases · seed {self.seed}")
        return "\n".join(lines)

    def write_junit(self, path: str | Path) -> None:
        root = ET.Element("testsuites", name="vpp-contract")
        for s in self.suites:
            suite = ET.SubElement(
                root,
                "testsuite",
                name=s.name,
                tests="1",
                failures=str(min(1, len(s.failures))),
                skipped="1" if s.skipped else "0",
                time=f"{s.seconds:.3f}",
            )
            case = ET.SubElement(suite, "testcase", classname="vpp_contract", name=s.name)
            case.set("time", f"{s.seconds:.3f}")
            if s.skipped:
                ET.SubElement(case, "skipped", message=s.skipped)
            if s.failures:
                first = s.failures[0]
                node = ET.SubElement(
                    case,
                    "failure",
                    message=f"rule {first.rule} ({first.check}) participation "
                    f"{first.participation}",
                )
                node.text = "\n\n".join(f.render() for f in s.failures)
        ET.ElementTree(root).write(str(path), encoding="utf-8", xml_declaration=True)

"""The JUnit rendering of a Report: one test case per rule per suite, SKIPPED test cases for
the checks not made (with the reason), and a `coverage` suite with the run's measure; and of
the proxy's Tally: one test case per rule."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from vpp_sandbox.contract_tests import model
from vpp_sandbox.contract_tests.findings import REGISTRY, RULE_TITLES, rule_order
from vpp_sandbox.contract_tests.proxy_report import RULES, Tally
from vpp_sandbox.contract_tests.report import Failure, Report, SuiteResult

__all__ = ["junit_xml", "proxy_junit_xml", "write_junit", "write_proxy_junit"]


def _case(parent: ET.Element, suite: str, name: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(
        parent, "testcase", classname=f"vpp_contract.{suite}", name=name, time=f"{seconds:.3f}"
    )


def _fail(case: ET.Element, failures: list[Failure]) -> None:
    first = failures[0]
    node = ET.SubElement(
        case,
        "failure",
        message=f"{first.label} ({first.check}) participation {first.participation}",
        type=first.check,
    )
    node.text = "\n\n".join(f.render() for f in failures)


def _suite(root: ET.Element, report: Report, s: SuiteResult) -> None:
    node = ET.SubElement(root, "testsuite", name=s.name, time=f"{s.seconds:.3f}")
    cov = report.coverage
    judged: dict[str, dict[str, int]] = {}
    for (suite, check), n in cov.exercised.items():
        if suite == s.name and check in REGISTRY:
            judged.setdefault(REGISTRY[check].rule, {})[check] = n
    ours = [f for f in s.failures if f.kind == "rule"]
    rules = set(judged) | {f.rule for f in ours}
    for rule in sorted(rules, key=rule_order):
        case = _case(node, s.name, f"rule {rule}: {RULE_TITLES.get(rule, '')}".strip())
        failed = [f for f in ours if f.rule == rule]
        if failed:
            _fail(case, failed)
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(f"{check}: judged {n}x" for check, n in sorted(
            judged.get(rule, {}).items()))
    for (suite, check), reason in sorted(cov.skipped.items()):
        if suite == s.name:
            info = REGISTRY[check]
            case = _case(node, s.name, f"rule {info.rule}: {check}")
            ET.SubElement(case, "skipped", message=reason)
    others: dict[str, list[Failure]] = {}
    for f in s.failures:
        if f.kind != "rule":
            others.setdefault(f"{f.label}: {f.check}", []).append(f)
    for name, failures in others.items():
        _fail(_case(node, s.name, name), failures)
    if s.skipped and not len(node):
        ET.SubElement(_case(node, s.name, s.name), "skipped", message=s.skipped)
    if not len(node):
        _case(node, s.name, f"{s.name}: {s.cases} cases", s.seconds)
    _totals(node)


def _coverage(root: ET.Element, report: Report) -> None:
    node = ET.SubElement(root, "testsuite", name="coverage")
    summary = report.summary
    case = _case(node, "coverage", f"coverage {summary.percent:.1f}%")
    ET.SubElement(case, "system-out").text = report.summary.render()
    if report.below_min_coverage:
        ET.SubElement(
            case,
            "failure",
            message=f"coverage {summary.percent:.1f}% is below --min-coverage "
            f"{report.min_coverage:g}%",
            type="min_coverage",
        ).text = summary.render()
    edges = _case(node, "coverage", f"legal edges taken: {summary.edges_taken} of "
                                    f"{summary.edges_total}")
    untaken = [f"{a} -> {b}" for a, b in model.LEGAL_EDGES if (a, b) not in report.coverage.edges]
    ET.SubElement(edges, "system-out").text = "never taken: " + (", ".join(untaken) or "none")
    illegal = _case(node, "coverage", f"illegal moves tried: {summary.illegal_tried} of "
                                      f"{summary.illegal_total}")
    tried = report.coverage.illegal
    untried = [f"{a} -> {b}" for a, b in model.ILLEGAL_MOVES if (a, b) not in tried]
    ET.SubElement(illegal, "system-out").text = "never tried: " + (", ".join(untried) or "none")
    for check, reason in report.not_made().items():
        skipped = _case(node, "coverage", f"rule {REGISTRY[check].rule}: {check}")
        ET.SubElement(skipped, "skipped", message=f"not checked: {reason}")
    _totals(node)


def _totals(node: ET.Element) -> None:
    cases = node.findall("testcase")
    node.set("tests", str(len(cases)))
    node.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    node.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    node.set("errors", "0")


def junit_xml(report: Report) -> ET.ElementTree:
    root = ET.Element("testsuites", name="vpp-contract")
    for s in report.suites:
        _suite(root, report, s)
    _coverage(root, report)
    suites = root.findall("testsuite")
    for key in ("tests", "failures", "skipped"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    return ET.ElementTree(root)


def write_junit(report: Report, path: str | Path) -> None:
    junit_xml(report).write(str(path), encoding="utf-8", xml_declaration=True)


def proxy_junit_xml(tally: Tally) -> ET.ElementTree:
    """The proxy's run: one test case per rule, failed (with its first violations and their
    reproductions), passed, or skipped when no exchange gave it anything to judge."""
    root = ET.Element("testsuites", name="vpp-contract-proxy")
    node = ET.SubElement(root, "testsuite", name="proxy", time=f"{tally.seconds:.3f}")
    for rule in RULES:
        case = _case(node, "proxy", f"rule {rule}")
        kept = tally.examples.get(rule, [])
        if kept:
            first = kept[0].violation
            ET.SubElement(
                case,
                "failure",
                message=f"{tally.broken[rule]} violation(s); first: {first.heading} "
                f"participation {first.participation}",
                type=first.check,
            ).text = "\n\n".join(Failure.of("proxy", e.violation, e.curl).render() for e in kept)
        elif not tally.applied[rule]:
            ET.SubElement(case, "skipped", message="no exchange this rule applies to went "
                                                   "through the proxy")
        else:
            case.set("assertions", str(tally.applied[rule]))
    _totals(node)
    return ET.ElementTree(root)


def write_proxy_junit(tally: Tally, path: str | Path) -> None:
    proxy_junit_xml(tally).write(str(path), encoding="utf-8", xml_declaration=True)

"""The JUnit rendering of a Report, in the order of the text report: a `findings` suite with
one failed test case per finding (named by rule, check and operation, its root cause first in
the message; the diagnosis in the suite's output), an `advice` suite, a `rules` suite with one
test case per rule (the tally: failed, passed with its judgements, or skipped when never
judged), a `suites` suite with the checks each suite could not make (SKIPPED, with the
reason), and a `coverage` suite with the run's measure; and of the proxy's Tally: one test
case per rule."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from vpp_sandbox.contract_tests import model
from vpp_sandbox.contract_tests.digest import Finding
from vpp_sandbox.contract_tests.findings import REGISTRY, RULE_TITLES
from vpp_sandbox.contract_tests.proxy_report import RULES, Tally
from vpp_sandbox.contract_tests.report import Failure, Report

__all__ = ["finding_text", "junit_xml", "proxy_junit_xml", "write_junit", "write_proxy_junit"]


def _case(parent: ET.Element, suite: str, name: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(
        parent, "testcase", classname=f"vpp_contract.{suite}", name=name, time=f"{seconds:.3f}"
    )


def finding_text(finding: Finding) -> str:
    """A finding whole: where it was met, its reproduction, every distinct message."""
    shown = finding.reproduction
    lines = [finding.where, "", shown.what]
    if shown.curl:
        lines += ["", "reproduce: " + shown.curl.replace("\n", " ")]
    others = list(dict.fromkeys(f.what for f in finding.failures if f.what != shown.what))
    if others:
        lines += ["", f"also ({len(others)} other message(s)):"]
        lines += [f"  [{f.suite}] {f.what}" for f in finding.failures if f.what in others][:50]
    return "\n".join(lines)


def _findings(root: ET.Element, report: Report) -> None:
    node = ET.SubElement(root, "testsuite", name="findings")
    diagnosis = report.diagnosis()
    out = [f"{i}. {d.headline()}: {d.cause.why}" for i, d in enumerate(diagnosis, start=1)]
    ET.SubElement(node, "system-out").text = "\n".join(out) or "No findings."
    for i, d in enumerate(diagnosis, start=1):
        for j, finding in enumerate(d.findings, start=1):
            case = _case(node, d.cause.key, f"{i}.{j} {finding.title}")
            ET.SubElement(
                case, "failure", type=finding.check,
                message=f"{d.cause.title}: {finding.reproduction.what}"[:500],
            ).text = finding_text(finding)
    advice = ET.SubElement(root, "testsuite", name="advice")
    for finding in report.advice_findings:
        case = _case(advice, "advice", f"advice: {finding.title}")
        ET.SubElement(case, "system-out").text = finding_text(finding)
    _totals(node)
    _totals(advice)


def _rules(root: ET.Element, report: Report) -> None:
    node = ET.SubElement(root, "testsuite", name="rules")
    for rule, findings, cases, judged in report.tally():
        case = _case(node, "rules", f"rule {rule}: {RULE_TITLES.get(rule, 'the suite itself')}")
        if findings:
            ET.SubElement(case, "failure", type="rule",
                          message=f"{findings} finding(s), {cases} failed case(s), {judged} "
                                  "judgement(s) (see the findings suite)")
        elif not judged:
            ET.SubElement(case, "skipped", message="no check of this rule judged anything")
        else:
            ET.SubElement(case, "system-out").text = f"{judged} judgement(s), none failed"
    _totals(node)


def _suites(root: ET.Element, report: Report) -> None:
    node = ET.SubElement(root, "testsuite", name="suites")
    for s in report.suites:
        case = _case(node, s.name, f"{s.name}: {s.cases} cases", s.seconds)
        if s.skipped:
            ET.SubElement(case, "skipped", message=s.skipped)
    for (suite, check), reason in sorted(report.coverage.skipped.items()):
        case = _case(node, suite, f"{suite}: rule {REGISTRY[check].rule}: {check}")
        ET.SubElement(case, "skipped", message=reason)
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
    _findings(root, report)
    _rules(root, report)
    _suites(root, report)
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

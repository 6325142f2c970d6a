"""The proxy's findings: one Violation per broken rule on an exchange, its log line, the tally.

A Violation carries the request and the response as the client and the server sent them,
with secrets replaced by shell variables (`$VPP_TOKEN`, `$VPP_BASIC`), and a curl command
that replays the request against the upstream. The Tally counts exchanges, how many each
rule applied to and how many broke it (bounded: counters, and the first few violations of
each rule for JUnit), and renders the summary printed at exit and the JUnit report.
"""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpp_sandbox.contract_tests.ledger import Observation
from vpp_sandbox.contract_tests.target import Exchange

__all__ = [
    "RULES",
    "Tally",
    "Violation",
    "applicable_rules",
    "curl_of",
    "dumps",
    "redact_headers",
]

# Every rule the proxy judges, in report order.
RULES = (*(str(n) for n in range(1, 16)), "§7", "schema")
_VPP = ("createVppParticipation", "listVppParticipations", "retrieveVppParticipation",
        "updateVppParticipation")
_QUIET_HEADERS = frozenset({
    "host", "content-length", "accept-encoding", "accept", "user-agent", "connection",
})
_BODY_MAX = 256 * 1024  # characters of a body kept in a log line
EXAMPLES_PER_RULE = 20  # violations of each rule kept in memory for the JUnit report


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with credentials replaced by shell variables."""
    out = {}
    for name, value in headers.items():
        if name.lower() == "authorization":
            kind = value.split(" ", 1)[0]
            if kind.lower() == "bearer":
                value = "Bearer $VPP_TOKEN"
            elif kind.lower() == "basic":
                value = "Basic $VPP_BASIC"
        out[name] = value
    return out


def curl_of(method: str, url: str, headers: Mapping[str, str], body: bytes) -> str:
    """A copy-paste curl command for the request, the bearer token as `$VPP_TOKEN`."""
    parts = ["curl", "-X", method]
    for name, value in headers.items():
        lower = name.lower()
        if lower in _QUIET_HEADERS:
            continue
        if lower == "authorization" and value.lower().startswith("bearer"):
            parts += ["-H", '"Authorization: Bearer $VPP_TOKEN"']
        elif lower == "authorization" and value.lower().startswith("basic"):
            parts += ["-u", '"$VPP_ACCOUNT_ID:$VPP_API_KEY"']
        else:
            parts += ["-H", shlex.quote(f"{name}: {value}")]
    if body:
        parts += ["--data-binary", shlex.quote(body.decode("utf-8", errors="replace"))]
    parts.append(shlex.quote(url))
    return " ".join(parts)


def _body(data: Any, text: str) -> Any:
    """A body for the log: JSON as JSON (a login's token redacted), else text, bounded."""
    if isinstance(data, dict) and isinstance(data.get("bearer_token"), str):
        data = {**data, "bearer_token": "$VPP_TOKEN"}
    if data is not None and len(text) <= _BODY_MAX:
        return data
    return text[:_BODY_MAX] + ("…" if len(text) > _BODY_MAX else "")


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule on one exchange."""

    time: str
    rule: str
    check: str
    participation: str
    message: str
    exchange: Exchange
    request_body: bytes
    upstream: str  # the upstream's URL of the request (what curl replays)

    @property
    def curl(self) -> str:
        return curl_of(self.exchange.method, self.upstream, self.exchange.headers,
                       self.request_body)

    def to_json(self) -> dict[str, Any]:
        ex = self.exchange
        request_text = self.request_body.decode("utf-8", errors="replace")
        return {
            "time": self.time,
            "rule": self.rule,
            "check": self.check,
            "participation": self.participation,
            "message": self.message,
            "request": {
                "method": ex.method,
                "url": self.upstream,
                "path": ex.path,
                "query": ex.query,
                "headers": redact_headers(ex.headers),
                "body": _body(ex.body, request_text) if self.request_body else None,
            },
            "response": {
                "status": ex.status,
                "headers": dict(ex.response_headers),
                "body": _body(ex.data, ex.text),
            },
            "curl": self.curl,
        }

    @property
    def detail(self) -> str:
        """The message without its ``rule R (check): participation P:`` prefix."""
        prefix = f"rule {self.rule} ({self.check}): participation {self.participation}: "
        return self.message.removeprefix(prefix)

    def line(self) -> str:
        """One line for the terminal."""
        return (f"VIOLATION rule {self.rule} ({self.check}) participation {self.participation}: "
                f"{self.detail} [{self.exchange.method} {self.exchange.path} -> "
                f"{self.exchange.status}]")


def applicable_rules(obs: Observation, documented: bool) -> set[str]:
    """The rules that had something to judge on this exchange (for 'applied' counts)."""
    rules = {"§7"}
    op, status = obs.operation, obs.exchange.status
    if documented:
        rules.add("schema")
    has_objects = any(True for _ in obs.participations())
    if has_objects:
        rules |= {"1", "2", "3", "4", "5", "6", "7", "8", "9", "11"}
    if op == "createBearerToken" and status == 200:
        rules.add("9")
    if has_objects and op in ("retrieveVppParticipation", "listVppParticipations"):
        rules.add("10")
    if op == "updateVppParticipation" and obs.identity is not None:
        rules.add("12")
    if op in _VPP and obs.identity is not None:
        rules.add("13")
    if op in _VPP and obs.identity is None:
        rules.add("14")
    if op == "listVppParticipations" and 200 <= status < 300:
        rules.add("15")
    return rules


@dataclass(slots=True)
class Tally:
    """Counts for the summary and JUnit; memory bounded by EXAMPLES_PER_RULE."""

    exchanges: int = 0
    checked: int = 0
    upstream_errors: Counter[str] = field(default_factory=Counter)
    check_errors: int = 0  # exchanges a check could not judge (a bug: reported, passed on)
    applied: Counter[str] = field(default_factory=Counter)
    broken: Counter[str] = field(default_factory=Counter)
    by_check: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[str, list[Violation]] = field(default_factory=dict)
    seconds: float = 0.0

    def seen(self, rules: Iterable[str]) -> None:
        self.checked += 1
        self.applied.update(rules)

    def add(self, violation: Violation) -> None:
        self.broken[violation.rule] += 1
        self.by_check[(violation.rule, violation.check)] += 1
        kept = self.examples.setdefault(violation.rule, [])
        if len(kept) < EXAMPLES_PER_RULE:
            kept.append(violation)

    @property
    def violations(self) -> int:
        return sum(self.broken.values())

    def render(self, evicted: int = 0) -> str:
        lines = [
            f"vpp-sandbox proxy: {self.exchanges} exchanges, {self.checked} answered by the "
            "upstream and checked against the contract"
        ]
        for kind, count in sorted(self.upstream_errors.items()):
            lines.append(f"  upstream {kind}: {count}")
        if self.check_errors:
            lines.append(f"  exchanges the checks could not judge: {self.check_errors}")
        lines.append(f"  {'rule':<8}{'applied':>9}{'violations':>12}  checks")
        for rule in RULES:
            checks = ", ".join(
                f"{c} x{n}" for (r, c), n in sorted(self.by_check.items()) if r == rule
            )
            lines.append(f"  {rule:<8}{self.applied[rule]:>9}{self.broken[rule]:>12}  {checks}")
        if evicted:
            lines.append(f"  {evicted} participations forgotten to bound memory "
                         "(their next view was checked as new)")
        verdict = "no violations" if not self.violations else f"{self.violations} violation(s)"
        lines.append(f"{'PASSED' if not self.violations else 'FAILED'}: {verdict}")
        return "\n".join(lines)

    def write_junit(self, path: str | Path) -> None:
        """One test case per rule: failed (with its first violations), passed, or skipped."""
        root = ET.Element("testsuites", name="vpp-contract-proxy")
        suite = ET.SubElement(
            root, "testsuite", name="proxy", tests=str(len(RULES)),
            failures=str(sum(1 for r in RULES if self.broken[r])),
            skipped=str(sum(1 for r in RULES if not self.applied[r] and not self.broken[r])),
            time=f"{self.seconds:.3f}",
        )
        for rule in RULES:
            case = ET.SubElement(suite, "testcase", classname="vpp_contract.proxy",
                                 name=f"rule {rule}")
            if self.broken[rule]:
                kept = self.examples.get(rule, [])
                first = kept[0]
                node = ET.SubElement(
                    case, "failure",
                    message=f"{self.broken[rule]} violation(s); first: {first.check} "
                    f"participation {first.participation}",
                )
                node.text = "\n\n".join(
                    f"{v.line()}\n    reproduce: {v.curl}" for v in kept
                )
            elif not self.applied[rule]:
                ET.SubElement(case, "skipped",
                              message="no exchange this rule applies to went through the proxy")
            else:
                case.set("assertions", str(self.applied[rule]))
        ET.ElementTree(root).write(str(path), encoding="utf-8", xml_declaration=True)


def dumps(violation: Violation) -> str:
    """The violation log's line for one violation."""
    return json.dumps(violation.to_json(), ensure_ascii=False, separators=(",", ":"))

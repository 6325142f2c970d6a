"""The proxy's findings: each Violation of the suite's checks as the proxy logs it, and the tally.

A LogEntry is a `findings.Violation` (rule, check, participation, message, exchange) plus when
it was seen, the request's body as the client sent it and the upstream's URL. Its log line
carries the request and the response with secrets replaced by shell variables (`$VPP_TOKEN`,
`$VPP_BASIC`), and a curl command that replays the request against the upstream. The Tally
counts exchanges, how many each rule judged and how many broke it (bounded: counters, and the
first few violations of each rule for JUnit, which `junit.py` renders, kept without the
answers' bodies) and renders the summary printed at exit.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vpp_sandbox.contract_tests import checks
from vpp_sandbox.contract_tests.findings import Violation, rule_order
from vpp_sandbox.contract_tests.target import Exchange

__all__ = [
    "RULES",
    "LogEntry",
    "Tally",
    "curl_of",
    "dumps",
    "redact_headers",
]

# Every rule a check judges on a single exchange, in report order (the suite's registry).
RULES = tuple(sorted({c.rule for c in checks.CHECKS}, key=rule_order))
_QUIET_HEADERS = frozenset({
    "host", "content-length", "accept-encoding", "accept", "user-agent", "connection",
})
_BODY_MAX = 256 * 1024  # characters of a body kept in a log line
EXAMPLES_PER_RULE = 20  # violations of each rule kept in memory for the JUnit report
_KEPT_TEXT = 4096  # characters of an answer kept with each of them


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
class LogEntry:
    """One Violation on one exchange, as the proxy saw it."""

    time: str
    violation: Violation
    exchange: Exchange  # the exchange judged (the Violation's own)
    request_body: bytes
    upstream: str  # the upstream's URL of the request (what curl replays)

    @property
    def rule(self) -> str:
        return self.violation.rule

    @property
    def check(self) -> str:
        return self.violation.check

    @property
    def participation(self) -> str:
        return self.violation.participation

    @property
    def message(self) -> str:
        """The whole finding, as the Violation words it (rule, check, participation, what)."""
        return str(self.violation)

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

    def kept(self) -> LogEntry:
        """This entry as the tally keeps it for JUnit (message, reproduction): the answer's text
        cut to its start and its parsed body dropped, so what is kept is bounded by the count
        of entries, not by the size of the answers they were on."""
        ex = self.exchange
        slim = dataclasses.replace(ex, text=ex.text[:_KEPT_TEXT], data=None)
        v = self.violation
        return dataclasses.replace(
            self, exchange=slim,
            violation=Violation(v.rule, v.check, v.participation, v.message, slim),
        )  # fmt: skip

    def line(self) -> str:
        """One line for the terminal."""
        v = self.violation
        return (f"VIOLATION {v.heading} participation {v.participation}: {v.message} "
                f"[{self.exchange.method} {self.exchange.path} -> {self.exchange.status}]")


@dataclass(slots=True)
class Tally:
    """Counts for the summary and JUnit; memory bounded by EXAMPLES_PER_RULE."""

    exchanges: int = 0
    checked: int = 0
    upstream_errors: Counter[str] = field(default_factory=Counter)
    check_errors: int = 0  # exchanges a check could not judge (a bug: reported, passed on)
    abandoned: int = 0  # requests whose client left before the body was whole: not forwarded
    applied: Counter[str] = field(default_factory=Counter)
    broken: Counter[str] = field(default_factory=Counter)
    by_check: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[str, list[LogEntry]] = field(default_factory=dict)
    seconds: float = 0.0

    def seen(self, rules: Iterable[str]) -> None:
        """One exchange checked; `rules` had something to judge in it."""
        self.checked += 1
        self.applied.update(rules)

    def add(self, entry: LogEntry) -> None:
        self.broken[entry.rule] += 1
        self.by_check[(entry.rule, entry.check)] += 1
        kept = self.examples.setdefault(entry.rule, [])
        if len(kept) < EXAMPLES_PER_RULE:
            kept.append(entry.kept())

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
        if self.abandoned:
            lines.append(f"  requests left by their client before the body was whole (not "
                         f"forwarded): {self.abandoned}")
        lines.append(f"  {'rule':<8}{'applied':>9}{'violations':>12}  checks")
        for rule in RULES:
            names = ", ".join(
                f"{c} x{n}" for (r, c), n in sorted(self.by_check.items()) if r == rule
            )
            lines.append(f"  {rule:<8}{self.applied[rule]:>9}{self.broken[rule]:>12}  {names}")
        if evicted:
            lines.append(f"  {evicted} participations forgotten to bound memory "
                         "(their next view was checked as new)")
        verdict = "no violations" if not self.violations else f"{self.violations} violation(s)"
        lines.append(f"{'PASSED' if not self.violations else 'FAILED'}: {verdict}")
        return "\n".join(lines)


def dumps(entry: LogEntry) -> str:
    """The violation log's line for one violation."""
    return json.dumps(entry.to_json(), ensure_ascii=False, separators=(",", ":"))

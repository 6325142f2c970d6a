"""Findings: a run's failures grouped by what broke (rule, check, operation, cause's signature).

A broken server breaks one rule the same way on many requests and in several suites; a
provider needs that once, with where it was seen and one reproduction. `group` makes one
Finding of every failure with the same (kind, rule, check, operation, cause), in the order
they were first met.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vpp_sandbox.contract_tests.failures import Failure

__all__ = ["Finding", "group"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One distinct breach and every failure that showed it."""

    failures: tuple[Failure, ...]

    @property
    def first(self) -> Failure:
        return self.failures[0]

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        f = self.first
        return (f.kind, f.rule, f.check, f.operation, f.cause)

    @property
    def rule(self) -> str:
        return self.first.rule

    @property
    def check(self) -> str:
        return self.first.check

    @property
    def operation(self) -> str:
        return self.first.operation

    @property
    def advice(self) -> bool:
        return self.first.advice

    @property
    def cases(self) -> int:
        return len(self.failures)

    @property
    def suites(self) -> dict[str, int]:
        """Failures per suite, in the order the suites met it."""
        out: dict[str, int] = {}
        for f in self.failures:
            out[f.suite] = out.get(f.suite, 0) + 1
        return out

    @property
    def participations(self) -> list[str]:
        seen = dict.fromkeys(f.participation for f in self.failures if f.participation != "-")
        return list(seen)

    @property
    def reproduction(self) -> Failure:
        """The failure to replay: the first with a curl command (shortest, when several)."""
        with_curl = [f for f in self.failures if f.curl]
        return min(with_curl, key=lambda f: len(f.curl)) if with_curl else self.first

    @property
    def title(self) -> str:
        return f"{self.first.label} · {self.check} · {self.operation}"

    @property
    def where(self) -> str:
        """"3 cases: transitions 2, semantics 1" (and the participations, when few)."""
        suites = ", ".join(f"{s} {n}" for s, n in self.suites.items())
        text = f"{self.cases} case{'s' if self.cases != 1 else ''}: {suites}"
        pids = self.participations
        if pids:
            more = f" and {len(pids) - 2} more" if len(pids) > 2 else ""
            text += f" · participation{'s' if len(pids) > 1 else ''} {', '.join(pids[:2])}{more}"
        return text

    def render(self, indent: str = "  ", width: int = 0, reproduce: bool = True) -> str:
        """Title and where, what is wrong (cut at `width` characters, if given), and the
        reproduction (unless not `reproduce`)."""
        shown = self.reproduction
        what = " ".join(shown.what.split())
        if width and len(what) > width:
            what = what[: width - 1] + "…"
        lines = [f"{indent}{'!' if self.advice else '✗'} {self.title} · {self.where}",
                 f"{indent}    {what}"]
        if shown.curl and reproduce:
            lines.append(f"{indent}    reproduce: {shown.curl.replace(chr(10), ' ')}")
        return "\n".join(lines)


def group(failures: Iterable[Failure]) -> list[Finding]:
    """One Finding per (kind, rule, check, operation, cause), in first-met order."""
    found: dict[tuple[str, ...], list[Failure]] = {}
    for f in failures:
        key = (f.kind, f.rule, f.check, f.operation, f.cause or f.message)
        found.setdefault(key, []).append(f)
    return [Finding(tuple(items)) for items in found.values()]

"""One failed judgement of a run: which rule broke, by which check, where, and how to replay it."""

from __future__ import annotations

from dataclasses import dataclass

from vpp_sandbox.contract_tests.findings import Violation
from vpp_sandbox.contract_tests.ledger import operation_of
from vpp_sandbox.contract_tests.target import Exchange

__all__ = ["Failure"]


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed judgement: the rule, the check, the participation, the exchange and how to
    reproduce it. `kind` is "rule" (ours), "schemathesis" (a built-in check) or "error" (the
    suite could not run); `cause` is the breach's signature (failures of one check with one
    cause in one operation are one finding); `advice` marks a choice the spec does not bind."""

    suite: str
    rule: str
    check: str
    message: str
    curl: str = ""
    participation: str = "-"
    exchange: Exchange | None = None
    kind: str = "rule"
    cause: str = ""
    operation: str = "-"
    advice: bool = False
    detail: str = ""  # what is wrong, without the heading the message starts with

    @classmethod
    def of(cls, suite: str, violation: Violation, curl: str = "") -> Failure:
        exchange = violation.exchange
        return cls(
            suite,
            violation.rule,
            violation.check,
            str(violation),
            curl,
            violation.participation,
            exchange,
            cause=violation.cause,
            operation=operation_of(exchange.method, exchange.path) if exchange else "-",
            advice=violation.advice,
            detail=violation.message,
        )

    @property
    def what(self) -> str:
        """What is wrong, in one finding's words (the message without its heading)."""
        return self.detail or self.message

    @property
    def label(self) -> str:
        labels = {"rule": f"rule {self.rule}", "schemathesis": f"rule {self.rule} (Schemathesis)"}
        return labels.get(self.kind, "suite error")

    def render(self) -> str:
        text = f"[{self.suite}] {self.label} · {self.check} · participation {self.participation}\n"
        text += "    " + self.message.strip().replace("\n", "\n    ")
        if self.curl:
            text += "\n    reproduce: " + self.curl.replace("\n", " ")
        return text

"""Structured findings: every check registered once with its rule, and the Violation it raises.

A check is a function decorated with `register(rule)`; its body raises `broken(participation,
message)` when the contract is broken, and returns whether it judged anything (False: nothing
in the exchange was its business, which the coverage report counts as "not exercised"). The
registration turns `broken` into a `Violation` carrying the rule, the check's name, the
participation, the exchange and the cause's signature (which `broken` of the check raised it,
and what the target answered), so no report ever parses a message to find them. A check
registered with `advice=True` judges one of the sandbox's own choices that the spec does not
bind: its Violations are reported as advice, never as failures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec

from vpp_sandbox.contract_tests.ledger import Observation
from vpp_sandbox.contract_tests.target import Exchange

__all__ = [
    "REGISTRY",
    "RULE_TITLES",
    "Broken",
    "Check",
    "CheckInfo",
    "Violation",
    "broken",
    "register",
    "rule_order",
]

P = ParamSpec("P")

# The contract's numbered rules (section 5) and the sections the suite also checks.
RULE_TITLES: dict[str, str] = {
    "1": "exactly one IN_PROGRESS entry, and it is current_state",
    "2": "COMPLETE entries, then IN_PROGRESS, then PENDING",
    "3": "history starts at ENROLMENT_REQUESTED and follows legal transitions",
    "4": "the PENDING tail is a legal path; none after a terminal state",
    "5": "occurred_at and expected_at are ordered",
    "6": "time_created <= occurred_at <= time_updated",
    "7": "control_active exactly when ACTIVE",
    "8": "suspension_reasons exactly when SUSPENDED",
    "9": "id, object, live_mode and account_id",
    "10": "reads return the last write",
    "11": "history is append-only",
    "12": "illegal updates are 409 and change nothing",
    "13": "namespaces are isolated",
    "14": "no valid token, no access (401)",
    "15": "lists and pagination",
    "§1": "bearer tokens",
    "§2": "the participation object's fields and derived fields",
    "§4": "legal moves are accepted; the PENDING forecast is the expected path",
    "§6": "request semantics (create, update records, times, resubmission)",
    "§7": "errors are Flatpeak error objects; no 5xx",
}


def rule_order(rule: str) -> tuple[int, int]:
    """Sort key: rules 1-15 first, then the sections in order."""
    if rule.startswith("§"):
        return (1, int(rule[1:]))
    return (0, int(rule)) if rule.isdigit() else (2, 0)


class Violation(AssertionError):
    """A broken rule. An AssertionError, so Schemathesis reports it as a failed check (T13)."""

    def __init__(
        self,
        rule: str,
        check: str,
        participation: str,
        message: str,
        exchange: Exchange | None = None,
        *,
        cause: str = "",
        advice: bool = False,
    ) -> None:
        self.rule = rule
        self.check = check
        self.participation = participation
        self.message = message
        self.exchange = exchange
        # Two violations of one check with one cause are one finding, whatever the participation.
        self.cause = cause
        self.advice = advice
        super().__init__(f"{self.heading}: participation {participation}: {message}")

    @property
    def heading(self) -> str:
        """``rule R (check)``: how every report names the broken rule."""
        return f"rule {self.rule} ({self.check})"


class Broken(Exception):
    """Raised inside a check's body; the check's registration makes it a Violation."""

    def __init__(
        self,
        participation: object,
        message: str,
        exchange: Exchange | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.participation = "-" if participation is None else str(participation)
        self.message = message
        self.exchange = exchange
        self.cause = cause


def broken(
    participation: object,
    message: str,
    exchange: Exchange | None = None,
    *,
    cause: str | None = None,
) -> Broken:
    """What a check raises: the participation concerned (or "-") and what is wrong. `cause`
    names the kind of breach when one `broken` of a check stands for several (else the
    place it is raised from names it)."""
    return Broken(participation, message, exchange, cause)


def _raised_at(exc: BaseException) -> str:
    """Where a check raised: the signature of a cause when the check gave none."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"line {tb.tb_lineno}" if tb is not None else "-"


def _signature(exc: Broken, exchange: Exchange | None) -> str:
    cause = exc.cause or _raised_at(exc)
    return f"{cause}; answered {exchange.status}" if exchange is not None else cause


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """A registered check: its name, its rule and what it asserts (its docstring)."""

    name: str
    rule: str
    doc: str
    per_response: bool  # runs on every exchange (suites, Schemathesis phases, live traffic)
    schemathesis: bool  # also registered as a Schemathesis check
    idle: str  # why a run may never exercise it
    advice: bool = False  # judges a sandbox choice the spec does not bind: never a failure


REGISTRY: dict[str, CheckInfo] = {}


def _exchange_in(args: tuple[Any, ...]) -> Exchange | None:
    for arg in args:
        if isinstance(arg, Observation):
            return arg.exchange
        if isinstance(arg, Exchange):
            return arg
    return None


class Check(Generic[P]):
    """A registered check: call it like the function; a broken rule raises a Violation."""

    def __init__(self, func: Callable[P, bool], info: CheckInfo) -> None:
        self.func = func
        self.info = info
        self.__name__ = info.name
        self.__doc__ = func.__doc__

    @property
    def rule(self) -> str:
        return self.info.rule

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Run the check: True when it judged something, False when nothing applied."""
        try:
            return bool(self.func(*args, **kwargs))
        except Broken as exc:
            exchange = exc.exchange or _exchange_in(args)
            raise Violation(
                self.rule, self.__name__, exc.participation, exc.message, exchange,
                cause=_signature(exc, exchange), advice=self.info.advice,
            ) from None
        except Violation:
            raise
        except Exception as exc:  # a check bug is reported, never aborts a run (trap T13)
            raise Violation(
                self.rule,
                self.__name__,
                "-",
                f"could not evaluate the response: {type(exc).__name__}: {exc}",
                _exchange_in(args),
                cause=f"check error {type(exc).__name__}",
                advice=self.info.advice,
            ) from exc


def register(
    rule: str,
    *,
    per_response: bool = False,
    schemathesis: bool = True,
    idle: str = "",
    advice: bool = False,
) -> Callable[[Callable[P, bool]], Check[P]]:
    """Register a check for contract rule `rule` ("1".."15", or a section such as "§6");
    `idle` says why a run may not exercise it (shown when it did not); `advice` marks a check
    of a choice the spec leaves open (reported, never failed)."""
    if rule not in RULE_TITLES:
        raise ValueError(f"unknown rule {rule!r}")

    def wrap(func: Callable[P, bool]) -> Check[P]:
        name = func.__name__
        if name in REGISTRY:
            raise ValueError(f"check {name} registered twice")
        doc = " ".join((func.__doc__ or "").split())
        if not idle:
            idle_text = ("no exchange of this run was its business" if per_response
                         else "no suite of this run makes it")
        else:
            idle_text = idle
        info = CheckInfo(
            name, rule, doc, per_response, per_response and schemathesis, idle_text, advice
        )
        REGISTRY[name] = info
        return Check(func, info)

    return wrap

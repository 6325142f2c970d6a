"""Running the contract's checks on an exchange, in our suites, in Schemathesis, on live traffic.

The checks themselves live in `object_checks` (one response), `request_checks` (a response
against its request and what was seen before), `list_checks` (a page against its parameters and
every participation known) and `scripted_checks` (several responses of a suite's script); each
is registered once with its rule (`findings.register`). Every per-response check is also
registered as a Schemathesis check of the same name, active only while a contract run has
activated its ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import schemathesis

from vpp_sandbox.contract_tests import list_checks, object_checks, request_checks, scripted_checks
from vpp_sandbox.contract_tests.findings import REGISTRY, Check, Violation
from vpp_sandbox.contract_tests.ledger import Ledger, Observation, exchange_from_prepared
from vpp_sandbox.contract_tests.list_checks import *  # noqa: F403
from vpp_sandbox.contract_tests.object_checks import *  # noqa: F403  (one namespace of checks)
from vpp_sandbox.contract_tests.request_checks import *  # noqa: F403
from vpp_sandbox.contract_tests.scripted_checks import *  # noqa: F403
from vpp_sandbox.contract_tests.target import Exchange

__all__ = [
    "CHECKS",
    "RULE_OF",
    "Verdict",
    "activate",
    "active_ledger",
    "judge",
    "verdict",
    *object_checks.__all__,
    *request_checks.__all__,
    *list_checks.__all__,
    *scripted_checks.__all__,
]

CheckFn = Check[[Observation]]

# Every per-response check, in registration order (1-9, §1, §2, §7, then 10-14, §4, §6, 15).
CHECKS: list[CheckFn] = [
    c
    for module in (object_checks, request_checks, list_checks)
    for c in vars(module).values()
    if isinstance(c, Check) and c.info.per_response
]


class _RuleOf(Mapping[str, str]):
    """check name -> rule number, read from the registry (kept for earlier callers)."""

    def __getitem__(self, name: str) -> str:
        return REGISTRY[name].rule

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


RULE_OF: Mapping[str, str] = _RuleOf()

# The registered Schemathesis checks act only while a contract run has activated a ledger, so
# importing this module does not change other Schemathesis runs in the same process.
_ACTIVE: dict[str, Any] = {"ledger": None, "base_url": "http://testserver", "suite": "-"}


def activate(ledger: Ledger | None, base_url: str = "http://testserver", suite: str = "-") -> None:
    """Make `ledger` the memory of the Schemathesis-registered checks (None: switch off)."""
    _ACTIVE.update(ledger=ledger, base_url=base_url, suite=suite)


def active_ledger() -> Ledger | None:
    ledger = _ACTIVE["ledger"]
    return ledger if isinstance(ledger, Ledger) else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the per-response checks made of one exchange: the observation they judged, the
    checks that had something to judge in it, and the rules it broke."""

    observation: Observation
    judged: tuple[str, ...]
    violations: tuple[Violation, ...]

    @property
    def rules(self) -> set[str]:
        """The rules exercised on this exchange (broken or kept)."""
        return {REGISTRY[name].rule for name in self.judged}


def verdict(
    ledger: Ledger,
    exchange: Exchange,
    suite: str = "-",
    checks: Sequence[CheckFn] | None = None,
) -> Verdict:
    """Run every per-response check on one exchange (the ledger learns from it and counts
    what was judged in its coverage)."""
    obs = ledger.observe(exchange)
    judged, violations = _run(obs, checks or CHECKS, ledger, suite)
    return Verdict(obs, tuple(judged), tuple(violations))


def judge(
    ledger: Ledger,
    exchange: Exchange,
    suite: str = "-",
    checks: Sequence[CheckFn] | None = None,
) -> list[Violation]:
    """Run every per-response check on one exchange; the Violations, counted in coverage."""
    return list(verdict(ledger, exchange, suite, checks).violations)


def _run(
    obs: Observation, checks: Iterable[CheckFn], ledger: Ledger, suite: str
) -> tuple[list[str], list[Violation]]:
    judged: list[str] = []
    violations: list[Violation] = []
    for check in checks:
        try:
            made = check(obs)
        except Violation as violation:
            ledger.coverage.judged(suite, check.__name__, ok=False)
            judged.append(check.__name__)
            violations.append(violation)
        else:
            if made:
                ledger.coverage.judged(suite, check.__name__, ok=True)
                judged.append(check.__name__)
    return judged, violations


def _register(check: CheckFn) -> None:
    def st_check(ctx: Any, response: Any, case: Any) -> None:
        ledger = active_ledger()
        if ledger is None:
            return
        exchange = exchange_from_prepared(response.request, response, _ACTIVE["base_url"])
        obs = ledger.observe(exchange, key=response)
        for violation in _run(obs, [check], ledger, _ACTIVE["suite"])[1]:
            raise violation

    st_check.__name__ = check.__name__
    st_check.__qualname__ = check.__name__
    st_check.__doc__ = check.__doc__
    schemathesis.check(st_check)


for _check in CHECKS:
    if _check.info.schemathesis:
        _register(_check)

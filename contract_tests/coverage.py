"""What a run exercised: checks, transition-table edges, illegal moves and status codes.

One Coverage lives on the run's Ledger, so every exchange that goes through the checks
(scripted suites, Schemathesis phases, live traffic) is counted the same way. The measure that
`--min-coverage` compares is `Summary.percent`: the mean of three ratios, legal edges taken
(of 36), illegal moves tried (of 181) and checks exercised (of every registered check).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vpp_sandbox.contract_tests import model

if TYPE_CHECKING:
    from vpp_sandbox.contract_tests.ledger import Observation

__all__ = ["Coverage", "Summary"]


@dataclass(frozen=True, slots=True)
class Summary:
    """The three ratios and their mean, in percent."""

    edges_taken: int
    edges_total: int
    illegal_tried: int
    illegal_total: int
    checks_exercised: int
    checks_total: int

    @staticmethod
    def _pct(part: int, whole: int) -> float:
        return 100.0 * part / whole if whole else 100.0

    @property
    def edges_percent(self) -> float:
        return self._pct(self.edges_taken, self.edges_total)

    @property
    def illegal_percent(self) -> float:
        return self._pct(self.illegal_tried, self.illegal_total)

    @property
    def checks_percent(self) -> float:
        return self._pct(self.checks_exercised, self.checks_total)

    @property
    def percent(self) -> float:
        """The coverage measure: the unweighted mean of the three percentages."""
        return (self.edges_percent + self.illegal_percent + self.checks_percent) / 3

    def render(self) -> str:
        return (
            f"coverage {self.percent:.1f}% = mean of legal edges {self.edges_taken}/"
            f"{self.edges_total} ({self.edges_percent:.0f}%), illegal moves "
            f"{self.illegal_tried}/{self.illegal_total} ({self.illegal_percent:.0f}%), checks "
            f"{self.checks_exercised}/{self.checks_total} ({self.checks_percent:.0f}%)"
        )


class Coverage:
    """Counters of a run; thread-safe (Schemathesis may call checks from worker threads)."""

    def __init__(self) -> None:
        self.exercised: Counter[tuple[str, str]] = Counter()  # (suite, check) -> judged
        self.failed: Counter[tuple[str, str]] = Counter()  # (suite, check) -> violations
        self.skipped: dict[tuple[str, str], str] = {}  # (suite, check) -> why not made
        self.edges: Counter[tuple[str, str]] = Counter()  # legal moves the target took
        self.illegal: Counter[tuple[str, str]] = Counter()  # forbidden moves requested
        self.statuses: Counter[tuple[str, int]] = Counter()  # (operation, status) -> seen
        self._lock = threading.Lock()

    # -- recording --------------------------------------------------------------------------

    def judged(self, suite: str, check: str, ok: bool) -> None:
        with self._lock:
            self.exercised[(suite, check)] += 1
            if not ok:
                self.failed[(suite, check)] += 1

    def skip(self, suite: str, check: str, reason: str) -> None:
        """A check the suite could not make, and why (reported SKIPPED, never PASS)."""
        with self._lock:
            self.skipped.setdefault((suite, check), reason)

    def saw(self, obs: Observation) -> None:
        """Count the exchange's status, the moves it requested and the moves it shows."""
        with self._lock:
            self.statuses[(obs.operation, obs.exchange.status)] += 1
            if obs.operation != "updateVppParticipation":
                self._edges_seen(obs)
                return
            seen = obs.before.get(str(obs.path_id))
            records = obs.exchange.body.get("participation_state") if isinstance(
                obs.exchange.body, dict
            ) else None
            if seen is not None and _valid_records(records):
                assert isinstance(records, list)
                move = _safely(lambda: model.first_illegal_step(seen.view, records))
                if move is not None:
                    self.illegal[move] += 1
            self._edges_seen(obs)

    def _edges_seen(self, obs: Observation) -> None:
        if obs.identity is None:
            return
        for p in obs.participations():
            seen = obs.before.get(str(p.get("id")))
            if seen is None or seen.owner != obs.identity:
                continue
            old = _states(seen.view)
            new = _states(p)
            previous = old[-2] if len(old) > 1 else None
            for frm, to in model.new_edges(old, new):
                if to in model.allowed_after(frm, previous):
                    self.edges[(frm, to)] += 1
                previous = frm

    # -- reading ----------------------------------------------------------------------------

    def checks_exercised(self) -> set[str]:
        return {check for (_, check), n in self.exercised.items() if n}

    def summary(self, checks_total: int) -> Summary:
        legal = set(model.LEGAL_EDGES)
        illegal = set(model.ILLEGAL_MOVES)
        return Summary(
            edges_taken=len(legal & set(self.edges)),
            edges_total=len(legal),
            illegal_tried=len(illegal & set(self.illegal)),
            illegal_total=len(illegal),
            checks_exercised=len(self.checks_exercised()),
            checks_total=checks_total,
        )


def _states(p: Any) -> list[str]:
    timeline = p.get("participation_state") if isinstance(p, dict) else None
    if not isinstance(timeline, list):
        return []
    return [
        str(e.get("state"))
        for e in timeline
        if isinstance(e, dict) and e.get("status") != "PENDING"
    ]


def _valid_records(records: Any) -> bool:
    return (
        isinstance(records, list)
        and bool(records)
        and all(
            isinstance(r, dict)
            and r.get("state") in model.STATES
            and r.get("status") in model.STATUSES
            for r in records
        )
    )


def _safely(func: Any) -> Any:
    try:
        return func()
    except (KeyError, IndexError, TypeError, AttributeError):
        return None

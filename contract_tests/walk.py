"""Model-based lifecycle walk: a Hypothesis state machine of legal and illegal updates.

Each step sends an update the transition table allows or forbids, and every answer goes
through the checks, which judge it with the suite's own oracle (rule 12: the accept/reject
decision and the resulting object; rules 1-11 on every view). The machine does not raise on a
broken rule: failures are collected with their curl command, so a broken server is reported
once per rule instead of being shrunk through dozens of replays.
"""

from __future__ import annotations

import time
from typing import Any

import hypothesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vpp_sandbox.contract_tests import model
from vpp_sandbox.contract_tests import scripted_checks as sc
from vpp_sandbox.contract_tests.report import Options, SuiteResult
from vpp_sandbox.contract_tests.session import Session

__all__ = ["run_walk"]

_reasons = st.lists(st.sampled_from(model.REASONS), min_size=1, max_size=3, unique=True)


class LifecycleWalk(RuleBasedStateMachine):
    """One participation per example, driven through legal and illegal updates."""

    session: Session
    # Legal moves sent and taken over the whole run (class-level: Hypothesis makes a machine per
    # example); a walk whose target never moves must not pass (walk_took_legal_moves).
    tally: list[int]

    def __init__(self) -> None:
        super().__init__()
        self.pid: str | None = None
        self.view: dict[str, Any] | None = None

    @initialize()
    def create(self) -> None:
        created = self.session.create()
        if created.status == 201 and isinstance(created.data, dict):
            self.pid = str(created.data.get("id"))
            self.view = created.data

    def _history(self) -> list[str]:
        assert self.view is not None
        timeline = self.view["participation_state"]
        return [str(e["state"]) for e in timeline if e["status"] != "PENDING"]

    def _send(self, records: list[dict[str, Any]], legal: bool = False) -> None:
        assert self.pid is not None
        answer = self.session.update(self.pid, records)
        if legal:
            # Taken: accepted, and the participation is in the state the move went to.
            reached = answer.data.get("current_state") if isinstance(answer.data, dict) else None
            self.tally[0] += 1
            self.tally[1] += 200 <= answer.status < 300 and reached == records[-1]["state"]
        if 200 <= answer.status < 300 and isinstance(answer.data, dict):
            self.view = answer.data
        elif answer.status in (400, 409):
            # Rule 12 (and rule 10): the retrieve is checked against the view before the update.
            again = self.session.retrieve(self.pid)
            if again.status == 200 and isinstance(again.data, dict):
                self.view = again.data

    @rule(data=st.data(), legal=st.booleans(), reasons=_reasons)
    def move(self, data: st.DataObject, legal: bool, reasons: list[str]) -> None:
        if self.view is None:
            return
        history = self._history()
        allowed = model.allowed_after(history[-1], history[-2] if len(history) > 1 else None)
        pool = sorted(allowed) if legal and allowed else sorted(set(model.STATES) - allowed)
        state = data.draw(st.sampled_from(pool), label="state")
        record: dict[str, Any] = {"state": state, "status": "IN_PROGRESS"}
        if state == "SUSPENDED":
            record["suspension_reasons"] = reasons
        self._send([record], legal=state in allowed and state != history[-1])

    @rule(data=st.data(), reasons=_reasons)
    def move_through(self, data: st.DataObject, reasons: list[str]) -> None:
        """Two legal steps in one request: a COMPLETE record, then the IN_PROGRESS one."""
        if self.view is None:
            return
        history = self._history()
        before = history[-2] if len(history) > 1 else None
        first_choices = sorted(model.allowed_after(history[-1], before))
        if not first_choices:
            return
        first = data.draw(st.sampled_from(first_choices), label="through")
        second_choices = sorted(model.allowed_after(first, history[-1]))
        if not second_choices:
            return
        second = data.draw(st.sampled_from(second_choices), label="to")
        records = []
        for state, status in ((first, "COMPLETE"), (second, "IN_PROGRESS")):
            record: dict[str, Any] = {"state": state, "status": status}
            if state == "SUSPENDED":
                record["suspension_reasons"] = reasons
            records.append(record)
        self._send(records, legal=True)

    @rule(data=st.data(), reasons=_reasons)
    def fast_forward(self, data: st.DataObject, reasons: list[str]) -> None:
        """Several legal steps along the expected path at once (reaches ACTIVE quickly)."""
        if self.view is None:
            return
        path = model.expected_path(self._history()[-1])
        if not path:
            return
        stop = data.draw(st.integers(1, len(path)), label="steps")
        records: list[dict[str, Any]] = [
            {"state": s, "status": "COMPLETE"} for s in path[: stop - 1]
        ]
        records.append({"state": path[stop - 1], "status": "IN_PROGRESS"})
        for record in records:
            if record["state"] == "SUSPENDED":
                record["suspension_reasons"] = reasons
        self._send(records, legal=True)

    @rule()
    def resubmit(self) -> None:
        """The current state again: idempotent (200, nothing changes)."""
        if self.view is None:
            return
        record: dict[str, Any] = {"state": self.view["current_state"], "status": "IN_PROGRESS"}
        if self.view["current_state"] == "SUSPENDED":
            record["suspension_reasons"] = self.view["suspension_reasons"]
        self._send([record])

    @invariant()
    def reads_agree(self) -> None:
        """Rule 10 after every step: a retrieve is checked against the last write."""
        if self.pid is not None:
            self.session.retrieve(self.pid)


def run_walk(session: Session, options: Options) -> SuiteResult:
    started = time.monotonic()
    calls, before = session.calls, len(session.failures)
    tally = [0, 0]
    machine = type("Walk", (LifecycleWalk,), {"session": session, "tally": tally})
    if options.seed is not None:
        machine = hypothesis.seed(options.seed)(machine)
    hypothesis.stateful.run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=options.walks,
            stateful_step_count=options.walk_steps,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        ),
    )
    session.expect(sc.walk_took_legal_moves, tally[1], tally[0])
    return SuiteResult(
        "lifecycle", cases=session.calls - calls, seconds=time.monotonic() - started,
        failures=session.failures[before:],
    )

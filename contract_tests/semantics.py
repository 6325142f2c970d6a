"""The semantics suite (contract §6): what the update body means, case by case.

Misspelt enum values and malformed record lists are refused; times sent are kept (in UTC,
whole seconds), times left out are the time of the request, times in the future or going
back are refused; PENDING records sent become the forecast; resubmissions change nothing,
except SUSPENDED with other reasons. The per-response checks judge each accepted answer
(`update_appends_sent_records`, `pending_tail_is_expected`, `resubmission_changes_nothing`);
the script says which answers must be refusals.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from vpp_sandbox.contract_tests import scripted_checks as sc
from vpp_sandbox.contract_tests.report import Options, SuiteResult
from vpp_sandbox.contract_tests.session import Session
from vpp_sandbox.contract_tests.suites import TO_ACTIVE, move, obj, record, timed

__all__ = ["run_semantics"]

ACC, ADT = "AWAITING_CUSTOMER_CONSENT", "AWAITING_DEVICE_TELEMETRY"
CE, AR = "CHECKING_ELIGIBILITY", "AWAITING_REGISTRATION"
TEXT = "Sent by the contract suite."


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(at: datetime, hours: int = 0, fraction: str = "") -> str:
    """`at` written with a UTC offset of `hours` and an optional fraction of a second."""
    zone = timezone(timedelta(hours=hours))
    local = at.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S") + fraction
    if hours == 0:
        return local + "Z"
    sign = "+" if hours > 0 else "-"
    return f"{local}{sign}{abs(hours):02d}:00"


def run_semantics(session: Session, options: Options) -> SuiteResult:
    def body() -> None:
        # Created first: the time cases need the server's clock to have moved past it.
        aged = session.create(reference_id="contract-suite-times")
        session.create()  # reference_id left out: null on the answer
        _refusals(session)
        _resubmissions(session)
        if session.expect(sc.well_formed_create_accepted, aged):
            _times(session, obj(aged))

    return timed("semantics", session, body)


def _fresh(session: Session) -> str | None:
    created = session.create()
    if not session.expect(sc.well_formed_create_accepted, created):
        return None
    return str(obj(created)["id"])


def _refuse(session: Session, pid: str, what: str, records: list[dict[str, Any]]) -> None:
    session.expect(sc.malformed_update_refused, session.update(pid, records), pid, what)


def _refusals(session: Session) -> None:
    """Near-miss spellings and malformed record lists: 400, and nothing changes."""
    pid = _fresh(session)
    if pid is None:
        return
    later = _iso(datetime.now(UTC) + timedelta(days=1))
    cases: list[tuple[str, list[dict[str, Any]]]] = [
        ("a state in lower case", [record(ACC.lower())]),
        ('"active"', [record("active")]),
        ('"ACTIVE " (a trailing space)', [record("ACTIVE ")]),
        ("a state with a trailing space", [record(ACC + " ")]),
        ("a state with a leading space", [record(" " + ACC)]),
        ("a state in title case", [record(ACC.title())]),
        ("a state with hyphens", [record(ACC.replace("_", "-"))]),
        ("a status in lower case", [record(ACC, "in_progress")]),
        ("a status with a space", [record(ACC, "IN PROGRESS")]),
        ("PENDING in lower case", [record(ACC), record(ADT, "pending")]),
        ("no records", []),
        ("no IN_PROGRESS record", [record(ACC, "COMPLETE")]),
        ("two IN_PROGRESS records", [record(ACC), record(ADT)]),
        ("PENDING before IN_PROGRESS", [record(ADT, "PENDING"), record(ACC)]),
        ("COMPLETE after IN_PROGRESS", [record(ACC), record(ADT, "COMPLETE")]),
        ("reasons on a state other than SUSPENDED",
         [record(ACC, suspension_reasons=["OPERATOR_REQUEST"])]),
        ("a PENDING record with occurred_at", [record(ACC), record(ADT, "PENDING",
                                                                   occurred_at=later)]),
        ("an IN_PROGRESS record with expected_at", [record(ACC, expected_at=later)]),
        ("a PENDING path that is not legal", [record(ACC), record("ACTIVE", "PENDING")]),
    ]
    for what, records in cases:
        _refuse(session, pid, what, records)
    session.retrieve(pid)  # rule 12: none of them changed anything


def _resubmissions(session: Session) -> None:
    """Resubmissions and SUSPENDED reasons: same reasons change nothing, others replace them."""
    pid = _fresh(session)
    if pid is None:
        return
    month = _iso(datetime.now(UTC) + timedelta(days=30), hours=1)
    move(session, pid, "ENROLMENT_REQUESTED", TO_ACTIVE)
    move(session, pid, "ACTIVE", [record("ACTIVE")])
    _refuse(session, pid, "a reason in lower case",
            [record("SUSPENDED", suspension_reasons=["awaiting_telemetry"])])
    both = ["AWAITING_TELEMETRY", "CUSTOMER_REQUEST"]
    steps: list[tuple[str, list[dict[str, Any]]]] = [
        ("ACTIVE", [record("SUSPENDED", suspension_reasons=both)]),
        ("SUSPENDED", [record("SUSPENDED", suspension_reasons=both[::-1])]),  # same set
        ("SUSPENDED", [record("SUSPENDED", suspension_reasons=["OPERATOR_REQUEST"])]),
        ("SUSPENDED", [record("SUSPENDED", suspension_reasons=["OPERATOR_REQUEST"]),
                       record("ACTIVE", "PENDING", expected_at=month)]),
        ("SUSPENDED", [record("SUSPENDED", suspension_reasons=["OPERATOR_REQUEST"])]),
    ]
    for frm, records in steps:
        move(session, pid, frm, records)
    _refuse(session, pid, "SUSPENDED without reasons", [record("SUSPENDED")])
    for frm, records in [
        ("SUSPENDED", [record("UNENROLMENT_REQUESTED")]),
        ("UNENROLMENT_REQUESTED", [record("SUSPENDED")]),  # cancelled: reasons restored
        ("SUSPENDED", [record("UNENROLMENT_REQUESTED")]),
        ("UNENROLMENT_REQUESTED", [record("WINDING_DOWN", "COMPLETE"),
                                   record("UNENROLLED", "COMPLETE"), record("OFFBOARDED")]),
        ("OFFBOARDED", [record("OFFBOARDED")]),
    ]:
        move(session, pid, frm, records)
    _refuse(session, pid, "PENDING records after a terminal state",
            [record("OFFBOARDED"), record("ACTIVE", "PENDING")])


def _server_passed(session: Session, created: str) -> str | None:
    """A time the server's clock reached after `created` (time_created of a new participation
    made once the client's clock is a second past it), or None within about 4 seconds."""
    wait = (_at(created) + timedelta(seconds=1.05) - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, min(wait, 1.5)))
    for _ in range(6):
        probe = session.create()
        now = obj(probe).get("time_created")
        if probe.status == 201 and isinstance(now, str) and now > created:
            return now
        time.sleep(0.5)
    return None


def _times(session: Session, p: dict[str, Any]) -> None:
    """occurred_at and expected_at: kept as sent, defaulted to the request's time, refused when
    in the future or going back."""
    pid, created = str(p["id"]), str(p["time_created"])
    born = _at(created)
    future = datetime.now(UTC) + timedelta(days=1)
    for what, records in [
        ("occurred_at in the future", [record(ACC, occurred_at=_iso(future))]),
        ("occurred_at before the current entry's",
         [record(ACC, occurred_at=_iso(born - timedelta(days=1)))]),
        ("expected_at before the current entry's", [
            record(ACC), record(ADT, "PENDING", expected_at=_iso(born - timedelta(days=1)))]),
        ("expected_at going back", [
            record(ACC), record(ADT, "PENDING", expected_at=_iso(born + timedelta(days=2))),
            record(CE, "PENDING", expected_at=_iso(born + timedelta(days=1)))]),
    ]:
        _refuse(session, pid, what, records)
    reached = _server_passed(session, created)
    if reached is None:
        session.skip(sc.default_time_is_request_time,
                     f"the server's clock did not pass {created} within 4 s")
        return
    _refuse(session, pid, "occurred_at going back across records", [
        record(ACC, "COMPLETE", occurred_at=reached), record(ADT, occurred_at=created)])
    # Sent with an offset and a fraction: stored as the same instant, UTC, whole seconds.
    move(session, pid, "ENROLMENT_REQUESTED",
         [record(ACC, occurred_at=_iso(born, hours=2, fraction=".750"))])
    default = session.update(pid, [record(ADT)])
    if session.expect(sc.legal_move_accepted, default, pid, ACC, ADT):
        session.expect(sc.default_time_is_request_time, default, pid, reached)
    at = _at(reached)
    # The last PENDING record has no expected_at: the server picks one, not before the others.
    forecast = [
        record(CE),
        record(AR, "PENDING", expected_at=_iso(at + timedelta(days=1), hours=-5)),
        record("REGISTERED", "PENDING", expected_at=_iso(at + timedelta(days=3)),
               description=TEXT),
        record("ACTIVE", "PENDING"),
    ]
    move(session, pid, ADT, forecast)
    move(session, pid, CE, [record(CE), record("INELIGIBLE", "PENDING")])  # a new forecast
    move(session, pid, CE, [record(CE)])  # a plain resubmission keeps that forecast
    move(session, pid, CE, [record(AR, "COMPLETE", description=TEXT),
                            record("REGISTERED", "COMPLETE"), record("ACTIVE")])

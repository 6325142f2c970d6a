"""Scripted suites: cross-request rules 10-12, security 14 and isolation 13.

Every call goes through a Session, so all per-response checks run on it as well; the scripts
add what one response cannot show (a second namespace, a forged token), each through a
registered check of `scripted_checks` (`Session.expect`), so the rule comes from there.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import jwt

from vpp_sandbox.contract_tests import checks, model
from vpp_sandbox.contract_tests import scripted_checks as sc
from vpp_sandbox.contract_tests.ledger import Observation
from vpp_sandbox.contract_tests.report import Options, SuiteResult
from vpp_sandbox.contract_tests.session import VPP, Session, random_id
from vpp_sandbox.contract_tests.target import Credentials, Exchange, Raw

__all__ = [
    "TO_ACTIVE",
    "move",
    "obj",
    "read_back",
    "record",
    "run_cross_request",
    "run_isolation",
    "run_security",
    "timed",
]

TO_ACTIVE = [
    {"state": s, "status": "COMPLETE"}
    for s in (
        "AWAITING_CUSTOMER_CONSENT",
        "AWAITING_DEVICE_TELEMETRY",
        "CHECKING_ELIGIBILITY",
        "AWAITING_REGISTRATION",
        "REGISTERED",
    )
] + [{"state": "ACTIVE", "status": "IN_PROGRESS"}]


def timed(name: str, session: Session, body: Callable[[], None]) -> SuiteResult:
    """Run a suite's script and collect what it found."""
    started, calls, before = time.monotonic(), session.calls, len(session.failures)
    body()
    return SuiteResult(
        name,
        cases=session.calls - calls,
        seconds=time.monotonic() - started,
        failures=session.failures[before:],
    )


def obj(answer: Exchange) -> dict[str, Any]:
    return answer.data if isinstance(answer.data, dict) else {}


def record(state: str, status: str = "IN_PROGRESS", **extra: Any) -> dict[str, Any]:
    return {"state": state, "status": status, **extra}


def move(
    session: Session, pid: str, frm: str, records: list[dict[str, Any]], legal: bool = True
) -> Exchange:
    """Send `records` and expect the table's answer: the move taken, or a 409."""
    answer = session.update(pid, records)
    to = str([r for r in records if r["status"] != "PENDING"][-1]["state"])
    if legal:
        session.expect(sc.legal_move_accepted, answer, pid, frm, to)
    else:
        session.expect(sc.illegal_move_refused, answer, pid, frm, to)
    return answer


def read_back(session: Session, pid: str, device: str) -> None:
    """Retrieve, then list the device: both checked against the last write (rule 10)."""
    got = session.retrieve(pid)
    if not session.expect(sc.write_is_retrievable, got, pid):
        return
    page = session.list(device_id=device, limit=100)
    if page.status == 200:
        session.expect(sc.list_contains_participation, Observation(page, None), obj(got))


# -- rules 10-12 ---------------------------------------------------------------------------------


def run_cross_request(session: Session, options: Options) -> SuiteResult:
    def body() -> None:
        created = session.create(reference_id="contract-suite")
        if not session.expect(sc.well_formed_create_accepted, created):
            return
        p = obj(created)
        pid, device = str(p["id"]), str(p["device_id"])
        read_back(session, pid, device)
        dup = session.create(device_id=device, programme_id=p["programme"]["id"])
        session.expect(sc.duplicate_enrolment_refused, dup, pid)
        move(session, pid, "ENROLMENT_REQUESTED", [record("ACTIVE")], legal=False)
        read_back(session, pid, device)
        move(session, pid, "ENROLMENT_REQUESTED", TO_ACTIVE)
        read_back(session, pid, device)
        script: list[tuple[str, list[dict[str, Any]], bool]] = [
            ("ACTIVE", [record("SUSPENDED", suspension_reasons=["AWAITING_TELEMETRY"])], True),
            ("SUSPENDED", [record("SUSPENDED", suspension_reasons=["AWAITING_TELEMETRY"])], True),
            ("SUSPENDED", [record("SUSPENDED", suspension_reasons=[
                "OPERATOR_REQUEST", "CUSTOMER_REQUEST"])], True),
            ("SUSPENDED", [record("REGISTERED")], False),
            ("SUSPENDED", [record("UNENROLMENT_REQUESTED")], True),
            ("UNENROLMENT_REQUESTED", [record("SUSPENDED")], True),  # cancel: reasons restored
            ("SUSPENDED", [record("UNENROLMENT_REQUESTED")], True),
            ("UNENROLMENT_REQUESTED", [record("WINDING_DOWN", "COMPLETE"), record("FAILED")],
             True),
            ("FAILED", [record("FAILED")], True),
            ("FAILED", [record("ACTIVE")], False),
        ]
        for frm, records, legal in script:
            move(session, pid, frm, records, legal)
            read_back(session, pid, device)
        again = session.create(device_id=device, programme_id=p["programme"]["id"])
        session.expect(sc.terminal_frees_the_device, again, pid)
        _errors(session)

    return timed("cross-request", session, body)


def _errors(session: Session) -> None:
    """Errors of every kind carry the status and code of their cause (section 7). Requests
    outside the spec's operations are made too: there only HTTP's rules bind (a 405 carries
    Allow); how the sandbox answers them is advice (checked on every exchange)."""
    token = session.token()
    text = {"Content-Type": "text/plain"}
    for what, answer, status, code in (
        ("an unknown participation id", session.retrieve(random_id("vpp")), 404,
         "participation_not_found"),
        ("malformed JSON", session.call("POST", VPP, token=token, body=Raw('{"device_id": ')),
         400, "invalid_request_body"),
        ("a body that is not JSON", session.call("POST", VPP, token=token, headers=text,
                                                 body=Raw("device_id=dev_1")), 415,
         "unsupported_media_type"),
    ):
        session.expect(sc.error_names_its_cause, answer, status, code, what)
    session.call("GET", VPP + "-list", token=token)  # an unknown route
    for method in ("DELETE", "TRACE"):  # methods the spec does not declare for the path
        session.call(method, VPP, token=token)


# -- rule 14 ---------------------------------------------------------------------------------------


# Long enough for PyJWT's key-length check; certainly not the server's key.
_WRONG_KEY = "contract-suite-forgery-key-that-no-server-uses-0123456789"
NO_SECRET = (
    "needs the server's signing key: set VPP_CONTRACT_JWT_SECRET (staging only) to make a "
    "genuine expired token; without it an expired token is only a forgery (checked as one)"
)


def _forged(account_id: str, live: bool, *, secret: str, expired: bool) -> str:
    now = int(time.time())
    at = now - 7200 if expired else now
    claims = {
        "account_id": account_id,
        "live_mode": live,
        "iss": "FlatPeakAPI",
        "sub": account_id,
        "iat": at,
        "nbf": at,
        "exp": at + 3600,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _unsigned(token: str) -> str:
    """The real token with its signature replaced: a forgery of a valid token."""
    head, payload, _ = token.split(".") if token.count(".") == 2 else (token, "", "")
    fake = base64.urlsafe_b64encode(b"x" * 32).decode().rstrip("=")
    return f"{head}.{payload}.{fake}"


def run_security(session: Session, options: Options) -> SuiteResult:
    target = session.target
    jwt_secret = target.jwt_secret

    def body() -> None:
        creds = target.credentials
        token = session.token(creds)
        created = session.create()
        if not session.expect(sc.well_formed_create_accepted, created):
            return
        pid = str(obj(created)["id"])
        bad_tokens: dict[str, dict[str, str]] = {
            "no token": {},
            "empty bearer": {"Authorization": "Bearer "},
            "malformed token": {"Authorization": "Bearer not.a.jwt"},
            "Basic instead of Bearer": {"Authorization": creds.basic},
            "forged signature": {"Authorization": f"Bearer {_unsigned(token)}"},
            "foreign key": {
                "Authorization": "Bearer "
                + _forged(creds.account_id, creds.live_mode, secret=_WRONG_KEY, expired=False)
            },
        }
        if jwt_secret:
            bad_tokens["expired token"] = {
                "Authorization": "Bearer "
                + _forged(creds.account_id, creds.live_mode, secret=jwt_secret, expired=True)
            }
        else:
            session.skip(sc.expired_token_rejected, NO_SECRET)
        update = {"participation_state": [{"state": "FAILED", "status": "IN_PROGRESS"}]}
        create = {
            "device_id": random_id("dev"),
            "provider_id": random_id("prv"),
            "programme_id": random_id("vpr"),
        }
        for kind, headers in bad_tokens.items():
            # unauthenticated_request_rejected (rule 14) judges every answer here.
            for answer in (
                session.call("GET", VPP, headers=headers),
                session.call("POST", VPP, headers=headers, body=create),
                session.call("GET", f"{VPP}/{pid}", headers=headers),
                session.call("POST", f"{VPP}/{pid}", headers=headers, body=update),
            ):
                session.expect(sc.unauthenticated_code_names_the_problem, answer, kind)
                if kind == "expired token":
                    session.expect(sc.expired_token_rejected, answer)
        wrong = Credentials(creds.account_id, creds.api_key[:8] + "not-the-key")
        login = session.call("GET", "/login", headers={"Authorization": wrong.basic})
        session.expect(sc.unauthenticated_code_names_the_problem, login, "wrong API key")
        after = session.retrieve(pid)
        session.expect(sc.unauthenticated_change_had_no_effect, after, pid, "ENROLMENT_REQUESTED")

    return timed("security", session, body)


# -- rule 13 ---------------------------------------------------------------------------------------

ISOLATION_CHECKS = (
    sc.second_credential_is_distinct,
    sc.foreign_create_is_independent,
    sc.foreign_id_not_found,
    sc.foreign_cursor_refused,
    sc.not_listed_to_other_namespace,
    checks.namespaces_are_isolated,
)


def run_isolation(session: Session, options: Options) -> SuiteResult:
    """Rule 13 with a second credential (another account, or this account's other mode)."""
    if session.target.second is None:
        reason = (
            "isolation not checked (rule 13): give --second-account-id and --second-api-key "
            "(another account, or this account's key of the other mode)"
        )
        for check in ISOLATION_CHECKS:
            session.skip(check, reason)
        return SuiteResult("isolation", skipped=reason)

    def body() -> None:
        created = session.create()
        if session.expect(sc.well_formed_create_accepted, created):
            _other_namespace(session, str(obj(created)["id"]), obj(created))

    return timed("isolation", session, body)


# The owner's participation is taken through a state of each phase; in each, the other
# namespace tries every operation on its id (rule 13 on every write, not only on reads).
_ISOLATION_TOUR: tuple[tuple[str, list[dict[str, Any]]], ...] = (
    ("ENROLMENT_REQUESTED", []),
    ("ACTIVE", TO_ACTIVE),
    ("SUSPENDED", [record("SUSPENDED", suspension_reasons=["OPERATOR_REQUEST"])]),
    ("UNENROLMENT_REQUESTED", [record("UNENROLMENT_REQUESTED")]),
    ("FAILED", [record("FAILED")]),
)
# From each state: a move the table allows, one it forbids, and the state again.
_FOREIGN_WRITES: dict[str, tuple[str, str]] = {
    "ENROLMENT_REQUESTED": ("AWAITING_CUSTOMER_CONSENT", "ACTIVE"),
    "ACTIVE": ("UNENROLMENT_REQUESTED", "REGISTERED"),
    "SUSPENDED": ("ACTIVE", "ENROLMENT_REQUESTED"),
    "UNENROLMENT_REQUESTED": ("WINDING_DOWN", "ACTIVE"),
    "FAILED": ("FAILED", "ACTIVE"),
}


def _other_namespace(session: Session, pid: str, p: dict[str, Any]) -> None:
    second = session.target.second
    assert second is not None
    if not session.expect(sc.second_credential_is_distinct, second == session.target.credentials):
        return
    token = session.token(second)
    device, programme = str(p["device_id"]), str(p["programme"]["id"])
    state = "ENROLMENT_REQUESTED"
    for reached, records in _ISOLATION_TOUR:
        if records:
            moved = move(session, pid, state, records)
            if obj(moved).get("current_state") != reached:
                # The owner's move failed (reported): the other namespace's cases there and
                # beyond are untried, which is said, never passed.
                for check in ISOLATION_CHECKS[1:4]:
                    session.skip(check, f"the owner's participation did not reach {reached}: "
                                        "its rule 13 cases from there on were not tried")
                return
        state = reached
        _foreign_calls(session, token, pid, state, device, programme)
        session.retrieve(pid)  # rules 10 and 12: still exactly as the owner left it


def _foreign_calls(
    session: Session, token: str, pid: str, state: str, device: str, programme: str
) -> None:
    seen = session.call("GET", f"{VPP}/{pid}", token=token)
    session.expect(sc.foreign_id_not_found, seen, pid,
                   f"another namespace retrieving it in {state}")
    legal, illegal = _FOREIGN_WRITES[state]
    for what, target in (("a legal move", legal), ("an illegal move", illegal),
                         ("its current state again", state)):
        sent = record(target)
        if target == "SUSPENDED":
            sent["suspension_reasons"] = ["CUSTOMER_REQUEST"]
        body = {"participation_state": [sent]}
        changed = session.call("POST", f"{VPP}/{pid}", token=token, body=body)
        session.expect(sc.foreign_id_not_found, changed, pid,
                       f"another namespace sending {what} ({target}) in {state}")
    for query in ({"device_id": device}, {"limit": 100}):
        listed = session.call("GET", VPP, token=token, query=query)
        session.expect(sc.not_listed_to_other_namespace, listed, pid)
    for cursor in ("starting_after", "ending_before"):
        page = session.call("GET", VPP, token=token, query={cursor: pid})
        session.expect(sc.foreign_cursor_refused, page, pid)
    if state in model.TERMINAL:
        return
    # The same device and programme in the other namespace: its own, independent enrolment.
    mine = session.call("POST", VPP, token=token, body={
        "device_id": device, "provider_id": random_id("prv"), "programme_id": programme})
    if session.expect(sc.foreign_create_is_independent, mine, pid, state):
        # Ended at once, so the next state's enrolment of the device is a first one again.
        session.call("POST", f"{VPP}/{obj(mine).get('id')}", token=token,
                     body={"participation_state": [record("FAILED")]})

"""Scripted suites: cross-request rules 10-12, security 13-14 and pagination 15.

Every call goes through a Session, so all per-response checks run on it as well; the scripts
add what one response cannot show (a walk over pages, a second namespace, a forged token).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import jwt

from vpp_sandbox.contract_tests import checks
from vpp_sandbox.contract_tests.ledger import Observation, participations_in
from vpp_sandbox.contract_tests.report import Options, SuiteResult
from vpp_sandbox.contract_tests.session import VPP, Session, random_id

__all__ = ["run_cross_request", "run_isolation", "run_pagination", "run_security"]

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


def _timed(name: str, session: Session, body: Callable[[], None]) -> SuiteResult:
    started, calls, before = time.monotonic(), session.calls, len(session.failures)
    try:
        body()
    except AssertionError as exc:
        session.fail(exc)
    return SuiteResult(
        name,
        cases=session.calls - calls,
        seconds=time.monotonic() - started,
        failures=session.failures[before:],
    )


def _expect(session: Session, answer: Any, statuses: tuple[int, ...], rule: str, what: str) -> bool:
    if answer.status in statuses:
        return True
    session.fail(
        f"rule {rule} (expected_status): participation -: {what}: answered {answer.status}, "
        f"expected {' or '.join(map(str, statuses))}",
        answer,
    )
    return False


def _obj(answer: Any) -> dict[str, Any]:
    return answer.data if isinstance(answer.data, dict) else {}


# -- rules 10-12 ---------------------------------------------------------------------------------


def run_cross_request(session: Session, options: Options) -> SuiteResult:
    def body() -> None:
        created = session.create(reference_id="contract-suite")
        if not _expect(session, created, (201,), "10", "create"):
            return
        p = _obj(created)
        pid, device = str(p["id"]), str(p["device_id"])
        _read_back(session, pid, device)
        # A duplicate enrolment of the same device and programme is refused (contract §6).
        dup = session.create(device_id=device, programme_id=p["programme"]["id"])
        _expect(session, dup, (409,), "§6", "second participation for the same device")
        # Illegal, then legal moves; each rejected one must leave the object as it was.
        bad = session.update(pid, [{"state": "ACTIVE", "status": "IN_PROGRESS"}])
        _expect(session, bad, (409,), "12", "ENROLMENT_REQUESTED -> ACTIVE")
        _read_back(session, pid, device)
        moved = session.update(pid, TO_ACTIVE)
        _expect(session, moved, (200,), "12", "the happy path to ACTIVE in one update")
        _read_back(session, pid, device)
        for records, status in (
            ([{"state": "SUSPENDED", "status": "IN_PROGRESS",
               "suspension_reasons": ["AWAITING_TELEMETRY"]}], 200),
            ([{"state": "SUSPENDED", "status": "IN_PROGRESS",
               "suspension_reasons": ["AWAITING_TELEMETRY"]}], 200),
            ([{"state": "SUSPENDED", "status": "IN_PROGRESS",
               "suspension_reasons": ["OPERATOR_REQUEST", "CUSTOMER_REQUEST"]}], 200),
            ([{"state": "REGISTERED", "status": "IN_PROGRESS"}], 409),
            ([{"state": "UNENROLMENT_REQUESTED", "status": "IN_PROGRESS"}], 200),
            ([{"state": "SUSPENDED", "status": "IN_PROGRESS"}], 200),
            ([{"state": "UNENROLMENT_REQUESTED", "status": "IN_PROGRESS"}], 200),
            ([{"state": "WINDING_DOWN", "status": "COMPLETE"},
              {"state": "FAILED", "status": "IN_PROGRESS"}], 200),
            ([{"state": "FAILED", "status": "IN_PROGRESS"}], 200),
            ([{"state": "ACTIVE", "status": "IN_PROGRESS"}], 409),
        ):
            answer = session.update(pid, records)
            states = "+".join(str(r["state"]) for r in records)
            _expect(session, answer, (status,), "12", f"update to {states}")
            first = records[0]
            restoring = first["state"] == "SUSPENDED" and "suspension_reasons" not in first
            reasons = _obj(answer).get("suspension_reasons")
            held = ["CUSTOMER_REQUEST", "OPERATOR_REQUEST"]
            if restoring and answer.status == 200 and sorted(reasons or []) != held:
                session.fail(
                    f"rule §6 (cancel_restores_reasons): participation {pid}: cancelling the "
                    f"leave request gave reasons {reasons}, not the ones held before",
                    answer,
                )
            _read_back(session, pid, device)
        # A terminal participation frees the device for a new enrolment.
        again = session.create(device_id=device, programme_id=p["programme"]["id"])
        _expect(session, again, (201,), "§6", "re-enrolment after a terminal state")

    return _timed("cross-request", session, body)


def _read_back(session: Session, pid: str, device: str) -> None:
    got = session.retrieve(pid)
    if got.status != 200:
        _expect(session, got, (200,), "10", f"retrieve {pid}")
        return
    page = session.list(device_id=device, limit=100)
    if page.status == 200:
        try:
            checks.list_contains_participation(Observation(page, None), _obj(got))
        except AssertionError as exc:
            session.fail(exc, page)


# -- rules 13-14 ---------------------------------------------------------------------------------


# Long enough for PyJWT's key-length check; certainly not the server's key.
_WRONG_KEY = "contract-suite-forgery-key-that-no-server-uses-0123456789"


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


def run_security(session: Session, options: Options, jwt_secret: str | None = None) -> SuiteResult:
    target = session.target

    def body() -> None:
        creds = target.credentials
        token = session.token(creds)
        created = session.create()
        if not _expect(session, created, (201,), "14", "create with a valid token"):
            return
        p = _obj(created)
        pid = str(p["id"])
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
            "expired token": {
                "Authorization": "Bearer "
                + _forged(
                    creds.account_id,
                    creds.live_mode,
                    secret=jwt_secret or _WRONG_KEY,
                    expired=True,
                )
            },
        }
        update = {"participation_state": [{"state": "FAILED", "status": "IN_PROGRESS"}]}
        create = {
            "device_id": random_id("dev"),
            "provider_id": random_id("prv"),
            "programme_id": random_id("vpr"),
        }
        for headers in bad_tokens.values():
            # unauthenticated_request_rejected (rule 14) judges every answer here.
            session.call("GET", VPP, headers=headers)
            session.call("POST", VPP, headers=headers, body=create)
            session.call("GET", f"{VPP}/{pid}", headers=headers)
            session.call("POST", f"{VPP}/{pid}", headers=headers, body=update)
        after = session.retrieve(pid)
        if after.status == 200 and _obj(after).get("current_state") != "ENROLMENT_REQUESTED":
            session.fail(
                f"rule 14 (unauthenticated_request_rejected): participation {pid}: an "
                "update without a valid token changed it",
                after,
            )

    return _timed("security", session, body)


def run_isolation(session: Session, options: Options) -> SuiteResult:
    """Rule 13 with a second credential (another account, or this account's other mode)."""
    if session.target.second is None:
        return SuiteResult(
            "isolation",
            skipped="rule 13 not checked: give --second-account-id and --second-api-key "
            "(another account, or this account's key of the other mode)",
        )

    def body() -> None:
        created = session.create()
        if _expect(session, created, (201,), "13", "create with the first credential"):
            _other_namespace(session, str(_obj(created)["id"]), _obj(created))

    return _timed("isolation", session, body)


def _other_namespace(session: Session, pid: str, p: dict[str, Any]) -> None:
    second = session.target.second
    assert second is not None
    if second == session.target.credentials:
        session.fail("rule 13 (namespaces_are_isolated): participation -: the second "
                     "credential is the first one; give another account or mode")
        return
    token = session.token(second)
    seen = session.call("GET", f"{VPP}/{pid}", token=token)
    _expect(session, seen, (404,), "13", "another namespace retrieving the participation")
    changed = session.call(
        "POST",
        f"{VPP}/{pid}",
        token=token,
        body={"participation_state": [{"state": "FAILED", "status": "IN_PROGRESS"}]},
    )
    _expect(session, changed, (404,), "13", "another namespace updating the participation")
    for query in ({"device_id": p["device_id"]}, {"limit": 100}):
        listed = session.call("GET", VPP, token=token, query=query)
        ids = [x.get("id") for x in participations_in(listed.data)]
        if pid in ids:
            session.fail(
                f"rule 13 (namespaces_are_isolated): participation {pid}: listed for "
                "another namespace",
                listed,
            )
    cursor = session.call("GET", VPP, token=token, query={"starting_after": pid})
    _expect(session, cursor, (400,), "13", "another namespace using the id as a cursor")
    session.retrieve(pid)  # rule 12/10 checks: still exactly as created


# -- rule 15 ---------------------------------------------------------------------------------------


def run_pagination(session: Session, options: Options) -> SuiteResult:
    def body() -> None:
        device = random_id("dev")
        made: list[tuple[str, str]] = []
        for _ in range(max(3, options.page_items)):
            answer = session.create(device_id=device)
            if not _expect(session, answer, (201,), "15", "create for the walk"):
                return
            made.append((str(_obj(answer)["time_created"]), str(_obj(answer)["id"])))
        # Newest first by time_created, ties by id, both descending (rule 15).
        expected = [pid for _, pid in sorted(made, reverse=True)]
        for limit in sorted({1, 2, 3, len(made) - 1, len(made), len(made) + 1}):
            _walk(session, device, limit, expected, forward=True)
            _walk(session, device, limit, expected, forward=False)
        both = session.list(
            device_id=device, starting_after=expected[0], ending_before=expected[-1]
        )
        _expect(session, both, (400,), "15", "both cursors at once")
        unknown = session.list(starting_after=random_id("vpp"))
        _expect(session, unknown, (400,), "15", "a cursor the server never issued")
        for limit in (0, 101):
            out = session.list(limit=limit)
            _expect(session, out, (400,), "15", f"limit={limit}")
        default = session.list()
        data = _obj(default).get("data")
        if isinstance(data, list) and len(data) > 30:
            session.fail(
                "rule 15 (list_page_is_well_formed): participation -: "
                f"{len(data)} items without a limit (default 30)",
                default,
            )

    return _timed("pagination", session, body)


def _walk(session: Session, device: str, limit: int, expected: list[str], forward: bool) -> None:
    query: dict[str, Any] = {"device_id": device, "limit": limit}
    if not forward:
        query["ending_before"] = expected[-1]  # start past the oldest item, walk back
    pages = [Observation(session.list(**query), None)]
    for _ in range(len(expected) + 2):
        data = _obj(pages[-1].exchange)
        items = data.get("data") or []
        if not data.get("has_more") or not items:
            break
        if forward:
            query = {"device_id": device, "limit": limit, "starting_after": items[-1]["id"]}
        else:
            query = {"device_id": device, "limit": limit, "ending_before": items[0]["id"]}
        pages.append(Observation(session.list(**query), None))
    want = expected if forward else expected[:-1]
    if not forward:
        pages.reverse()
    try:
        if forward:
            checks.pages_walk_every_item_once(pages, want)
        else:
            _backward(pages, want)
    except AssertionError as exc:
        session.fail(exc, pages[-1].exchange)


def _backward(pages: list[Observation], want: list[str]) -> None:
    """A backward walk: pages newest first once reversed; has_more false on the newest page."""
    ids = [str(p.get("id")) for page in pages for p in page.participations()]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    label = "rule 15 (pages_walk_every_item_once)"
    if dupes:
        raise AssertionError(f"{label}: participation {dupes[0]}: listed twice walking back")
    if ids != want:
        raise AssertionError(f"{label}: participation -: walking back gave {ids}, not {want}")
    for i, page in enumerate(pages):
        has_more = _obj(page.exchange).get("has_more")
        if has_more is not (i != 0):
            raise AssertionError(
                f"{label}: participation -: has_more {has_more} on backward page "
                f"{len(pages) - i} of {len(pages)} ({page.exchange.url})"
            )



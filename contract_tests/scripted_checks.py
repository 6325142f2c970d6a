"""Checks the suites' scripts make over answers they know the meaning of (a duplicate create, an
illegal move chosen on purpose, a full walk over pages). Each is registered with its rule; a
suite calls them through `Session.expect`, which counts and reports them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec

from vpp_sandbox.contract_tests import model
from vpp_sandbox.contract_tests.findings import Check, broken, register
from vpp_sandbox.contract_tests.ledger import Observation, participations_in
from vpp_sandbox.contract_tests.target import Exchange

__all__ = [
    "default_time_is_request_time",
    "duplicate_enrolment_refused",
    "error_names_its_cause",
    "expired_token_rejected",
    "foreign_create_is_independent",
    "foreign_cursor_refused",
    "foreign_id_not_found",
    "illegal_move_refused",
    "invalid_list_parameter_refused",
    "legal_move_accepted",
    "list_contains_participation",
    "malformed_update_refused",
    "not_listed_to_other_namespace",
    "pages_walk_back_every_item_once",
    "pages_walk_every_item_once",
    "second_credential_is_distinct",
    "terminal_frees_the_device",
    "unauthenticated_change_had_no_effect",
    "unauthenticated_code_names_the_problem",
    "walk_took_legal_moves",
    "well_formed_create_accepted",
    "write_is_retrievable",
]

P = ParamSpec("P")


def scripted(number: str) -> Callable[[Callable[P, bool]], Check[P]]:
    """Register a check a suite's script makes (not run on every exchange)."""
    return register(number)


def _obj(answer: Exchange) -> dict[str, Any]:
    return answer.data if isinstance(answer.data, dict) else {}


def _code(answer: Exchange) -> Any:
    return _obj(answer).get("code")


def _answered(answer: Exchange, status: int, codes: Sequence[str], pid: object, what: str) -> None:
    if answer.status != status or (codes and _code(answer) not in codes):
        got = f"{answer.status} {_code(answer) or ''}".strip()
        want = f"{status} {' or '.join(codes)}".strip()
        raise broken(pid, f"{what}: answered {got}, expected {want}")


# -- creates and reads ----------------------------------------------------------------------------


@scripted("§6")
def well_formed_create_accepted(answer: Exchange) -> bool:
    """§6: a create with well-formed ids the namespace has not enrolled is a 201."""
    _answered(answer, 201, (), "-", "create of a fresh device")
    return True


@scripted("§6")
def duplicate_enrolment_refused(answer: Exchange, existing: str) -> bool:
    """§6: a second non-terminal participation for the same device and programme is a 409
    participation_exists."""
    _answered(answer, 409, ("participation_exists",), existing,
              "second participation for the same device and programme")
    return True


@scripted("§6")
def terminal_frees_the_device(answer: Exchange, ended: str) -> bool:
    """§6: once a participation is terminal its device may enrol in the programme again."""
    _answered(answer, 201, (), ended, "re-enrolment after a terminal state")
    return True


@scripted("10")
def write_is_retrievable(answer: Exchange, pid: str) -> bool:
    """Rule 10: a participation just written can be retrieved (200)."""
    _answered(answer, 200, (), pid, f"retrieve {pid}")
    return True


@scripted("10")
def list_contains_participation(page: Observation, expected: Mapping[str, Any]) -> bool:
    """Rule 10: a list filtered to the participation's device shows it as last retrieved."""
    pid = expected.get("id")
    items = [p for p in page.participations() if p.get("id") == pid]
    if not items:
        raise broken(pid, "missing from the list of its device", page.exchange)
    if items[0] != expected:
        changed = sorted(k for k in set(items[0]) | set(expected)
                         if items[0].get(k) != expected.get(k))
        raise broken(pid, f"list item differs from the retrieve in {changed}", page.exchange)
    return True


# -- moves -----------------------------------------------------------------------------------------


@scripted("§4")
def legal_move_accepted(answer: Exchange, pid: str, frm: str, to: str) -> bool:
    """§4: a move the transition table allows is accepted (200) and reaches its state."""
    _answered(answer, 200, (), pid, f"{frm} -> {to}")
    if _obj(answer).get("current_state") != to:
        raise broken(pid, f"{frm} -> {to} accepted but current_state is "
                          f"{_obj(answer).get('current_state')}")
    return True


@scripted("12")
def illegal_move_refused(answer: Exchange, pid: str, frm: str, to: str) -> bool:
    """Rule 12: a move the table forbids is a 409 invalid_state_transition."""
    _answered(answer, 409, ("invalid_state_transition",), pid, f"{frm} -> {to}")
    return True


@scripted("§6")
def malformed_update_refused(answer: Exchange, pid: str, what: str) -> bool:
    """§6: an update whose records break the rules (order, times, reasons, spelling) is a 400."""
    _answered(answer, 400, ("participation_state_invalid", "invalid_request_body"), pid, what)
    return True


@scripted("§6")
def default_time_is_request_time(answer: Exchange, pid: str, not_before: str) -> bool:
    """§6: a record sent without occurred_at happened at the time of the request: no earlier
    than the server's clock just before it, no later than the answer's time_updated."""
    p = _obj(answer)
    entries = [e for e in p.get("participation_state") or [] if e.get("status") == "IN_PROGRESS"]
    if answer.status != 200 or len(entries) != 1:
        return False
    at = model.normalise_time(entries[0].get("occurred_at"))
    updated = model.normalise_time(p.get("time_updated"))
    if at is None or updated is None:
        return False
    if not not_before <= at <= updated:
        raise broken(pid, f"a record without occurred_at got {at}; the request was made "
                          f"between {not_before} and {updated} (time_updated)")
    return True


@scripted("§4")
def walk_took_legal_moves(taken: int, sent: int) -> bool:
    """§4: every legal move a walk sends is taken (accepted, and the participation is then in
    that state); a target that never moves has not been tested, and is not passed."""
    if taken < sent:
        never = ": the target never moved, so the lifecycle was not exercised" if not taken else ""
        raise broken("-", f"{sent - taken} of {sent} legal moves were not taken{never}")
    return bool(sent)


@scripted("§7")
def error_names_its_cause(answer: Exchange, status: int, code: str, what: str) -> bool:
    """Section 7: an error of an operation has the status and code of its cause (unknown id
    404 participation_not_found, malformed JSON 400 invalid_request_body, a body that is not
    JSON 415 unsupported_media_type)."""
    _answered(answer, status, (code,), "-", what)
    return True


# -- rules 13 and 14 ------------------------------------------------------------------------------


@scripted("13")
def second_credential_is_distinct(same: bool) -> bool:
    """Rule 13: isolation needs a second namespace (another account, or the other mode)."""
    if same:
        raise broken("-", "the second credential is the first one; give another account or "
                          "mode")
    return True


@scripted("13")
def foreign_id_not_found(answer: Exchange, pid: str, what: str) -> bool:
    """Rule 13: another namespace gets 404 participation_not_found for the id."""
    _answered(answer, 404, ("participation_not_found",), pid, what)
    return True


@scripted("13")
def foreign_create_is_independent(answer: Exchange, pid: str, state: str) -> bool:
    """Rule 13 and §6: another namespace may enrol the same device in the same programme (201),
    whatever state this namespace's participation is in: a 409 would show that it exists."""
    _answered(answer, 201, (), pid, f"another namespace enrolling the device while it is {state}")
    return True


@scripted("13")
def foreign_cursor_refused(answer: Exchange, pid: str) -> bool:
    """Rule 13: another namespace cannot use the id as a list cursor (400 invalid_parameter)."""
    _answered(answer, 400, ("invalid_parameter",), pid, "another namespace's id as a cursor")
    return True


@scripted("13")
def not_listed_to_other_namespace(answer: Exchange, pid: str) -> bool:
    """Rule 13: another namespace never sees the participation in a list."""
    if pid in [x.get("id") for x in participations_in(answer.data)]:
        raise broken(pid, "listed for another namespace")
    return answer.status == 200


# Rule 14's 401s, by what was wrong with the credential (contract §7's table).
UNAUTHENTICATED_CODES: Mapping[str, tuple[str, ...]] = {
    "no token": ("authentication_required",),
    "empty bearer": ("authentication_required", "token_invalid"),
    "malformed token": ("token_invalid",),
    "Basic instead of Bearer": ("authentication_required", "token_invalid"),
    "forged signature": ("token_invalid",),
    "foreign key": ("token_invalid",),
    "expired token": ("token_expired",),
    "wrong API key": ("credentials_invalid",),
}


@scripted("14")
def unauthenticated_code_names_the_problem(answer: Exchange, kind: str) -> bool:
    """Rule 14 and §7: the 401's code names what was wrong (authentication_required,
    token_invalid, token_expired, credentials_invalid); a login with a wrong key is a 401."""
    if answer.status != 401 and kind == "wrong API key":
        raise broken("-", f"a login with a wrong API key answered {answer.status}, not 401")
    if answer.status != 401:
        return False  # unauthenticated_request_rejected reports the status
    codes = UNAUTHENTICATED_CODES[kind]
    if _code(answer) not in codes:
        raise broken("-", f"{kind}: 401 with code {_code(answer)!r}, expected "
                          f"{' or '.join(codes)}")
    return True


@scripted("14")
def expired_token_rejected(answer: Exchange) -> bool:
    """Rule 14: a genuine token past its exp is a 401 token_expired (needs the signing key)."""
    _answered(answer, 401, ("token_expired",), "-", "a genuine token that expired")
    return True


@scripted("14")
def unauthenticated_change_had_no_effect(answer: Exchange, pid: str, state: str) -> bool:
    """Rule 14: updates sent without a valid token changed nothing."""
    if answer.status != 200:
        return False
    if _obj(answer).get("current_state") != state:
        raise broken(pid, f"an update without a valid token moved it from {state} to "
                          f"{_obj(answer).get('current_state')}")
    return True


# -- rule 15 ---------------------------------------------------------------------------------------


@scripted("15")
def invalid_list_parameter_refused(answer: Exchange, what: str) -> bool:
    """Rule 15: both cursors, an unknown cursor or a limit outside 1-100 is a 400
    invalid_parameter."""
    _answered(answer, 400, ("invalid_parameter",), "-", what)
    return True


def _has_more(page: Observation) -> Any:
    data = page.exchange.data
    return data.get("has_more") if isinstance(data, dict) else None


@scripted("15")
def pages_walk_every_item_once(pages: Sequence[Observation], expected: Sequence[str]) -> bool:
    """Rule 15: a full walk shows each item once, newest first, has_more true until the end
    (false on the last page, full or not)."""
    ids: list[str] = []
    for i, page in enumerate(pages):
        got = [str(p.get("id")) for p in page.participations()]
        if i and not got:
            raise broken("-", f"has_more was true on page {i} of the walk, but the next page "
                              f"is empty ({page.exchange.url})", page.exchange)
        last = i == len(pages) - 1
        if _has_more(page) is not (not last):
            where = "the last page" if last else f"page {i + 1} of {len(pages)}"
            raise broken(got[-1] if got else "-",
                         f"has_more is {_has_more(page)} on {where} ({page.exchange.url})",
                         page.exchange)
        ids += got
    final = pages[-1].exchange if pages else None
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise broken(dupes[0], f"listed twice in one walk ({len(dupes)} repeated)", final)
    missing = [i for i in expected if i not in ids]
    if missing:
        raise broken(missing[0], f"never listed in a full walk ({len(missing)} missing)", final)
    order = [i for i in ids if i in set(expected)]
    if order != list(expected):
        raise broken("-", f"walk order {order} is not newest first {list(expected)}", final)
    if len(ids) != len(expected):
        extra = [i for i in ids if i not in set(expected)]
        raise broken(extra[0], f"listed in a walk of another device's items ({len(extra)} extra)",
                     final)
    return True


@scripted("15")
def pages_walk_back_every_item_once(pages: Sequence[Observation], want: Sequence[str]) -> bool:
    """Rule 15: walking back with ending_before shows each newer item once, in order, with
    has_more false only on the newest page."""
    ids = [str(p.get("id")) for page in pages for p in page.participations()]
    for i, page in enumerate(pages[:-1]):
        if not list(page.participations()):
            raise broken("-", f"has_more was true walking back, but page {i + 1} is empty "
                              f"({page.exchange.url})", page.exchange)
    last = pages[0].exchange if pages else None  # the last one fetched (pages are reversed)
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise broken(dupes[0], "listed twice walking back", last)
    if ids != list(want):
        raise broken("-", f"walking back gave {ids}, not {list(want)}", last)
    for i, page in enumerate(pages):
        if _has_more(page) is not (i != 0):
            raise broken("-", f"has_more {_has_more(page)} on backward page {len(pages) - i} "
                              f"of {len(pages)} ({page.exchange.url})", page.exchange)
    return True

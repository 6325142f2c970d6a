"""The VPP participation lifecycle: states, legal transitions, the timeline and its rules.

Pure domain code: no I/O, no clock reads (``now`` is always passed in), no web framework.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

__all__ = [
    "DESCRIPTIONS",
    "EXPECTED_DELAY",
    "HAPPY_PATH",
    "LEAVING_PATH",
    "LEAVING_RESERVE",
    "LEAVING_STEPS",
    "MAX_HISTORY",
    "TERMINAL",
    "TRANSITIONS",
    "Entry",
    "IllegalTransition",
    "InvalidTimeline",
    "LifecycleError",
    "Participation",
    "Party",
    "Reason",
    "Record",
    "State",
    "Status",
    "TimelineFull",
    "allowed_next",
    "apply_update",
    "encode_document",
    "expected_path",
    "format_time",
    "is_legal",
    "new_participation",
    "parse_records",
    "parse_time",
]


class State(StrEnum):
    ENROLMENT_REQUESTED = "ENROLMENT_REQUESTED"
    AWAITING_CUSTOMER_CONSENT = "AWAITING_CUSTOMER_CONSENT"
    AWAITING_DEVICE_TELEMETRY = "AWAITING_DEVICE_TELEMETRY"
    AWAITING_LOCATION_TELEMETRY = "AWAITING_LOCATION_TELEMETRY"
    CHECKING_ELIGIBILITY = "CHECKING_ELIGIBILITY"
    AWAITING_REGISTRATION = "AWAITING_REGISTRATION"
    REGISTERED = "REGISTERED"
    INELIGIBLE = "INELIGIBLE"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    UNENROLMENT_REQUESTED = "UNENROLMENT_REQUESTED"
    WINDING_DOWN = "WINDING_DOWN"
    UNENROLLED = "UNENROLLED"
    OFFBOARDED = "OFFBOARDED"
    FAILED = "FAILED"


class Status(StrEnum):
    COMPLETE = "COMPLETE"
    IN_PROGRESS = "IN_PROGRESS"
    PENDING = "PENDING"


class Reason(StrEnum):
    AWAITING_TELEMETRY = "AWAITING_TELEMETRY"
    AWAITING_DISPATCH = "AWAITING_DISPATCH"
    AWAITING_CONSENT = "AWAITING_CONSENT"
    OPERATOR_REQUEST = "OPERATOR_REQUEST"
    CUSTOMER_REQUEST = "CUSTOMER_REQUEST"


S = State
TERMINAL = frozenset({S.INELIGIBLE, S.OFFBOARDED, S.FAILED})

# Section 4 of the contract. UNENROLMENT_REQUESTED may also go back to the state held just
# before it (a cancelled leave request); that edge depends on history, see `allowed_next`.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    S.ENROLMENT_REQUESTED: frozenset({S.AWAITING_CUSTOMER_CONSENT, S.FAILED}),
    S.AWAITING_CUSTOMER_CONSENT: frozenset(
        {S.AWAITING_DEVICE_TELEMETRY, S.UNENROLMENT_REQUESTED, S.FAILED}
    ),
    S.AWAITING_DEVICE_TELEMETRY: frozenset(
        {S.AWAITING_LOCATION_TELEMETRY, S.CHECKING_ELIGIBILITY, S.UNENROLMENT_REQUESTED, S.FAILED}
    ),
    S.AWAITING_LOCATION_TELEMETRY: frozenset(
        {S.CHECKING_ELIGIBILITY, S.UNENROLMENT_REQUESTED, S.FAILED}
    ),
    S.CHECKING_ELIGIBILITY: frozenset({S.AWAITING_REGISTRATION, S.INELIGIBLE, S.FAILED}),
    S.AWAITING_REGISTRATION: frozenset({S.REGISTERED, S.UNENROLMENT_REQUESTED, S.FAILED}),
    S.REGISTERED: frozenset({S.ACTIVE, S.FAILED}),
    S.ACTIVE: frozenset({S.SUSPENDED, S.UNENROLMENT_REQUESTED}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.SUSPENDED, S.UNENROLMENT_REQUESTED}),
    S.UNENROLMENT_REQUESTED: frozenset({S.WINDING_DOWN, S.FAILED}),
    S.WINDING_DOWN: frozenset({S.UNENROLLED, S.FAILED}),
    S.UNENROLLED: frozenset({S.OFFBOARDED}),
    S.INELIGIBLE: frozenset(),
    S.OFFBOARDED: frozenset(),
    S.FAILED: frozenset(),
}

HAPPY_PATH: tuple[State, ...] = (
    S.ENROLMENT_REQUESTED,
    S.AWAITING_CUSTOMER_CONSENT,
    S.AWAITING_DEVICE_TELEMETRY,
    S.CHECKING_ELIGIBILITY,
    S.AWAITING_REGISTRATION,
    S.REGISTERED,
    S.ACTIVE,
)
LEAVING_PATH: tuple[State, ...] = (
    S.UNENROLMENT_REQUESTED,
    S.WINDING_DOWN,
    S.UNENROLLED,
    S.OFFBOARDED,
)

# Customer-facing texts (the Flatpeak Connect pages' wording where they give one).
DESCRIPTIONS: Mapping[State, str] = {
    S.ENROLMENT_REQUESTED: "We've received your request to join the programme.",
    S.AWAITING_CUSTOMER_CONSENT: (
        "We need your permission to control your device during programme events. "
        "Please give consent to continue."
    ),
    S.AWAITING_DEVICE_TELEMETRY: (
        "We're waiting to receive data from your device. "
        "Please check it's switched on and connected to the internet."
    ),
    S.AWAITING_LOCATION_TELEMETRY: (
        "We're waiting to receive data from your home's meter. "
        "Please add your meter details to proceed."
    ),
    S.CHECKING_ELIGIBILITY: "We're checking whether your home and devices qualify.",
    S.AWAITING_REGISTRATION: "We're registering your device with the programme.",
    S.REGISTERED: "Good news, your device is registered.",
    S.INELIGIBLE: (
        "Unfortunately your home or devices don't currently qualify. "
        "This may change if your setup changes."
    ),
    S.ACTIVE: "Your device is dispatching.",
    S.SUSPENDED: "Your participation is paused. We'll resume it as soon as we can.",
    S.UNENROLMENT_REQUESTED: "We've received your request to leave the programme.",
    S.WINDING_DOWN: "We're settling your rewards and removing control of your device.",
    S.UNENROLLED: "You've left the programme. We keep your records for your reference.",
    S.OFFBOARDED: "Your participation has ended and your device data has been removed.",
    S.FAILED: "Something went wrong with your participation. Please contact support.",
}

# How long after the previous state each state is expected (consent within hours, telemetry
# within a day, eligibility and registration over days, a notice period when leaving).
EXPECTED_DELAY: Mapping[State, timedelta] = {
    S.ENROLMENT_REQUESTED: timedelta(0),
    S.AWAITING_CUSTOMER_CONSENT: timedelta(minutes=5),
    S.AWAITING_DEVICE_TELEMETRY: timedelta(hours=4),
    S.AWAITING_LOCATION_TELEMETRY: timedelta(hours=12),
    S.CHECKING_ELIGIBILITY: timedelta(days=1),
    S.AWAITING_REGISTRATION: timedelta(days=2),
    S.REGISTERED: timedelta(days=3),
    S.ACTIVE: timedelta(hours=1),
    S.SUSPENDED: timedelta(hours=1),
    S.UNENROLMENT_REQUESTED: timedelta(0),
    S.WINDING_DOWN: timedelta(hours=1),
    S.UNENROLLED: timedelta(days=14),
    S.OFFBOARDED: timedelta(days=30),
    S.INELIGIBLE: timedelta(hours=1),
    S.FAILED: timedelta(hours=1),
}

_TELEMETRY_ENDED = frozenset({S.UNENROLLED}) | TERMINAL
# The members by value, for the document parser (a dict look-up, not the enum's call).
_STATES = {member.value: member for member in State}
_STATUSES = {member.value: member for member in Status}
_REASONS = {member.value: member for member in Reason}

# A participation's history (its COMPLETE and IN_PROGRESS entries) holds at most MAX_HISTORY
# entries, so every read and update costs the same bounded work however long it has lived (a
# device suspended and resumed every week for almost five years). Only the participating
# phase can loop (ACTIVE <-> SUSPENDED, reason changes, cancelled leave requests); once the
# history reaches MAX_HISTORY - LEAVING_RESERVE entries, only the moves that end it are
# accepted, and the longest way out (UNENROLMENT_REQUESTED, WINDING_DOWN, UNENROLLED,
# OFFBOARDED) still fits: a full participation can always be ended, never stuck.
MAX_HISTORY = 500
LEAVING_STEPS = frozenset(LEAVING_PATH) | {S.FAILED}
LEAVING_RESERVE = len(LEAVING_PATH)


class LifecycleError(Exception):
    """A request the lifecycle refuses; `code` names it in the error catalogue."""

    code = "participation_state_invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTimeline(LifecycleError):
    """The update's records are malformed: order, statuses, times or reasons (400)."""

    code = "participation_state_invalid"


class IllegalTransition(LifecycleError):
    """A record moves to a state that the transition table does not allow (409)."""

    code = "invalid_state_transition"


class TimelineFull(LifecycleError):
    """The history is at its bound and the update does not end the participation (409)."""

    code = "timeline_full"


# -- time helpers ---------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    """RFC 3339 text to an aware UTC datetime truncated to the second."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return parsed.astimezone(UTC).replace(microsecond=0)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_ORJSON = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS


def encode_document(document: Mapping[str, Any]) -> str:
    """A `Participation.document()` (possibly with moved times) as JSON text."""
    return orjson.dumps(document, option=_ORJSON).decode()


def _floor(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


# -- the object -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    """A provider or programme as shown on the participation."""

    id: str
    display_name: str
    url: str


@dataclass(frozen=True, slots=True)
class Entry:
    state: State
    status: Status
    description: str
    occurred_at: datetime | None = None
    expected_at: datetime | None = None
    suspension_reasons: tuple[Reason, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state.value,
            "status": self.status.value,
            "description": self.description,
        }
        if self.occurred_at is not None:
            out["occurred_at"] = format_time(self.occurred_at)
        if self.expected_at is not None:
            out["expected_at"] = format_time(self.expected_at)
        out["suspension_reasons"] = [r.value for r in self.suspension_reasons]
        return out


@dataclass(frozen=True, slots=True)
class Participation:
    id: str
    account_id: str
    live_mode: bool
    device_id: str
    location_id: str
    reference_id: str | None
    provider: Party
    programme: Party
    timeline: tuple[Entry, ...]
    time_created: datetime
    time_updated: datetime
    # The scenario the sandbox's autopilot plays for this participation (not in the API).
    scenario: str = field(default="happy", compare=True)

    @property
    def history(self) -> tuple[Entry, ...]:
        """COMPLETE entries and the IN_PROGRESS one, oldest first."""
        return tuple(e for e in self.timeline if e.status is not Status.PENDING)

    @property
    def pending(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.timeline if e.status is Status.PENDING)

    @property
    def current(self) -> Entry:
        """The last entry of `history` (found from the end: only PENDING ones follow it)."""
        for entry in reversed(self.timeline):
            if entry.status is not Status.PENDING:
                return entry
        raise IndexError("a timeline without a COMPLETE or IN_PROGRESS entry")

    @property
    def current_state(self) -> State:
        return self.current.state

    @property
    def return_state(self) -> Entry | None:
        """While UNENROLMENT_REQUESTED: the entry held just before the request."""
        history = self.history
        if history[-1].state is S.UNENROLMENT_REQUESTED and len(history) > 1:
            return history[-2]
        return None

    @property
    def control_active(self) -> bool:
        return self.current_state is S.ACTIVE

    @property
    def telemetry_active(self) -> bool:
        current = self.current
        if current.state in _TELEMETRY_ENDED:
            return False
        if current.state is S.SUSPENDED and Reason.AWAITING_TELEMETRY in current.suspension_reasons:
            return False
        # Telemetry has arrived once the latest AWAITING_DEVICE_TELEMETRY step is behind us
        # (a cancelled leave request can bring the participation back to that step).
        waits = [e for e in self.history if e.state is S.AWAITING_DEVICE_TELEMETRY]
        return bool(waits) and waits[-1].status is Status.COMPLETE

    def document(self) -> dict[str, Any]:
        """The API object with datetimes and enums left as they are: THE one serialiser.

        `encode` turns it into the stored and answered JSON text; `to_json` into plain JSON
        values. Times are whole seconds (the lifecycle floors them), so the text is `...Z`.
        """
        timeline = []
        for e in self.timeline:
            entry: dict[str, Any] = {
                "state": e.state,
                "status": e.status,
                "description": e.description,
            }
            if e.occurred_at is not None:
                entry["occurred_at"] = e.occurred_at
            if e.expected_at is not None:
                entry["expected_at"] = e.expected_at
            entry["suspension_reasons"] = list(e.suspension_reasons)
            timeline.append(entry)
        current = self.current
        return {
            "object": "vpp-participation",
            "id": self.id,
            "reference_id": self.reference_id,
            "live_mode": self.live_mode,
            "device_id": self.device_id,
            "location_id": self.location_id,
            "current_state": current.state,
            "control_active": current.state is S.ACTIVE,
            "telemetry_active": self.telemetry_active,
            "suspension_reasons": list(current.suspension_reasons),
            "participation_state": timeline,
            "time_created": self.time_created,
            "time_updated": self.time_updated,
            "provider": {
                "id": self.provider.id,
                "provider_display_name": self.provider.display_name,
                "logo_url": self.provider.url,
            },
            "programme": {
                "id": self.programme.id,
                "programme_display_name": self.programme.display_name,
                "learn_more_url": self.programme.url,
            },
            "account_id": self.account_id,
        }

    def encode(self) -> str:
        """The API object as JSON text (what the store keeps and reads answer with)."""
        return encode_document(self.document())

    def to_json(self) -> dict[str, Any]:
        """The API object as plain JSON values."""
        data: dict[str, Any] = orjson.loads(self.encode())
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], scenario: str = "happy") -> Participation:
        """The participation of a stored document (or any canonical one: `encode`'s form,
        UTC `Z` times): the one document parser, made for speed (a world of 100,000). A
        state, status or reason the lifecycle does not know is a KeyError."""
        when = datetime.fromisoformat
        timeline = tuple(
            Entry(
                _STATES[e["state"]],
                _STATUSES[e["status"]],
                e["description"],
                when(e["occurred_at"]) if e.get("occurred_at") else None,
                when(e["expected_at"]) if e.get("expected_at") else None,
                tuple(_REASONS[r] for r in e.get("suspension_reasons", ())),
            )
            for e in data["participation_state"]
        )
        provider, programme = data["provider"], data["programme"]
        return cls(
            id=data["id"],
            account_id=data["account_id"],
            live_mode=data["live_mode"],
            device_id=data["device_id"],
            location_id=data["location_id"],
            reference_id=data.get("reference_id"),
            provider=Party(provider["id"], provider["provider_display_name"], provider["logo_url"]),
            programme=Party(
                programme["id"], programme["programme_display_name"], programme["learn_more_url"]
            ),
            timeline=timeline,
            time_created=when(data["time_created"]),
            time_updated=when(data["time_updated"]),
            scenario=scenario,
        )


# -- transitions ----------------------------------------------------------------------------


def allowed_next(current: State, return_state: State | None = None) -> frozenset[State]:
    """States legal after `current`; `return_state` is the state held before a leave request."""
    allowed = TRANSITIONS[current]
    if current is S.UNENROLMENT_REQUESTED and return_state is not None:
        allowed = allowed | {return_state}
    return allowed


def is_legal(current: State, target: State, return_state: State | None = None) -> bool:
    return target in allowed_next(current, return_state)


def expected_path(current: State, return_state: State | None = None) -> tuple[State, ...]:
    """The states the server predicts after `current` (the PENDING tail, without times)."""
    if current in HAPPY_PATH[:-1] or current is S.AWAITING_LOCATION_TELEMETRY:
        if current is S.AWAITING_LOCATION_TELEMETRY:
            start = HAPPY_PATH.index(S.CHECKING_ELIGIBILITY)
        else:
            start = HAPPY_PATH.index(current) + 1
        return HAPPY_PATH[start:]
    if current is S.SUSPENDED:
        return (S.ACTIVE,)
    if current in LEAVING_PATH:
        return LEAVING_PATH[LEAVING_PATH.index(current) + 1 :]
    return ()


def _pending_entries(states: Iterable[State], start: datetime) -> tuple[Entry, ...]:
    out = []
    at = start
    for state in states:
        at = at + EXPECTED_DELAY[state]
        reasons = (Reason.OPERATOR_REQUEST,) if state is S.SUSPENDED else ()
        out.append(Entry(state, Status.PENDING, DESCRIPTIONS[state], None, at, reasons))
    return tuple(out)


def new_participation(
    *,
    id: str,
    account_id: str,
    live_mode: bool,
    device_id: str,
    location_id: str,
    reference_id: str | None,
    provider: Party,
    programme: Party,
    now: datetime,
    scenario: str = "happy",
) -> Participation:
    """A participation just created: ENROLMENT_REQUESTED and the happy path as its tail."""
    now = _floor(now)
    first = Entry(
        S.ENROLMENT_REQUESTED, Status.IN_PROGRESS, DESCRIPTIONS[S.ENROLMENT_REQUESTED], now
    )
    tail = _pending_entries(expected_path(S.ENROLMENT_REQUESTED), now)
    return Participation(
        id=id,
        account_id=account_id,
        live_mode=live_mode,
        device_id=device_id,
        location_id=location_id,
        reference_id=reference_id,
        provider=provider,
        programme=programme,
        timeline=(first, *tail),
        time_created=now,
        time_updated=now,
        scenario=scenario,
    )


# -- updates --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One record of an update request, already type-checked by the schema."""

    state: State
    status: Status
    occurred_at: datetime | None = None
    expected_at: datetime | None = None
    suspension_reasons: tuple[Reason, ...] = ()
    description: str | None = None


def parse_records(body: Sequence[Mapping[str, Any]]) -> list[Record]:
    """Turn the request's `participation_state` into records (times parsed, reasons deduped)."""
    records = []
    for i, raw in enumerate(body):
        try:
            occurred = parse_time(raw["occurred_at"]) if raw.get("occurred_at") else None
            expected = parse_time(raw["expected_at"]) if raw.get("expected_at") else None
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidTimeline(
                f"participation_state[{i}] has a time that is not RFC 3339 ({exc}); "
                "send times like 2026-11-03T09:15:00Z."
            ) from None
        reasons = tuple(dict.fromkeys(Reason(r) for r in raw.get("suspension_reasons") or ()))
        records.append(
            Record(
                state=State(raw["state"]),
                status=Status(raw["status"]),
                occurred_at=occurred,
                expected_at=expected,
                suspension_reasons=reasons,
                description=raw.get("description"),
            )
        )
    return records


def _check_shape(records: Sequence[Record]) -> None:
    if not records:
        raise InvalidTimeline(
            "participation_state is empty; send at least the new current state "
            "as an IN_PROGRESS record."
        )
    in_progress = [i for i, r in enumerate(records) if r.status is Status.IN_PROGRESS]
    if len(in_progress) != 1:
        raise InvalidTimeline(
            "participation_state must contain exactly one IN_PROGRESS record (the new current "
            f"state); it has {len(in_progress)}."
        )
    pivot = in_progress[0]
    for i, r in enumerate(records):
        if i < pivot and r.status is not Status.COMPLETE:
            raise InvalidTimeline(
                f"participation_state[{i}] is {r.status.value} but comes before the IN_PROGRESS "
                "record; order records COMPLETE, then IN_PROGRESS, then PENDING."
            )
        if i > pivot and r.status is not Status.PENDING:
            raise InvalidTimeline(
                f"participation_state[{i}] is {r.status.value} but comes after the IN_PROGRESS "
                "record; order records COMPLETE, then IN_PROGRESS, then PENDING."
            )
        if r.status is Status.PENDING and r.occurred_at is not None:
            raise InvalidTimeline(
                f"participation_state[{i}] is PENDING and has occurred_at; a PENDING record "
                "has not happened yet: send expected_at instead."
            )
        if r.status is not Status.PENDING and r.expected_at is not None:
            raise InvalidTimeline(
                f"participation_state[{i}] is {r.status.value} and has expected_at; only "
                "PENDING records take expected_at: send occurred_at instead."
            )
        if r.state is not S.SUSPENDED and r.suspension_reasons:
            raise InvalidTimeline(
                f"participation_state[{i}] is {r.state.value} with suspension_reasons; only "
                "SUSPENDED records take reasons: remove them."
            )


def _need_reasons(i: int) -> InvalidTimeline:
    return InvalidTimeline(
        f"participation_state[{i}] is SUSPENDED without suspension_reasons; give at least one "
        f"of {', '.join(r.value for r in Reason)}."
    )


def _illegal(
    participation_id: str, frm: State, to: State, ret: State | None, recorded: bool = False
) -> IllegalTransition:
    """The 409 of a forbidden move; `recorded`: the record repeats a state already in the
    history (a client sending the whole timeline back), so the message says what to send."""
    allowed = allowed_next(frm, ret)
    resend = (
        f" {to.value} is already in the history: send only the records that follow the "
        f"current state {frm.value}, not the timeline recorded so far."
        if recorded
        else ""
    )
    if not allowed:
        return IllegalTransition(
            f"{participation_id} is {frm.value}, a terminal state: it accepts no further "
            f"updates. Create a new participation to enrol the device again.{resend}"
        )
    names = ", ".join(s.value for s in State if s in allowed)
    return IllegalTransition(
        f"Cannot move {participation_id} from {frm.value} to {to.value}. "
        f"Allowed next states: {names}.{resend}"
    )


def _build_tail(
    records: Sequence[Record],
    current: State,
    ret: State | None,
    base: datetime,
    offset: int,
) -> tuple[Entry, ...]:
    """PENDING entries from the request, checked as a legal path after `current`."""
    if records and current in TERMINAL:
        raise InvalidTimeline(
            f"{current.value} is terminal: nothing can follow it, so send no PENDING records."
        )
    out = []
    state, at = current, base
    for i, r in enumerate(records, start=offset):
        if not is_legal(state, r.state, ret):
            allowed = ", ".join(s.value for s in State if s in allowed_next(state, ret))
            raise InvalidTimeline(
                f"participation_state[{i}] expects {r.state.value} after {state.value}, which "
                f"is not a legal path; allowed after {state.value}: {allowed or 'nothing'}."
            )
        if r.state is S.SUSPENDED and not r.suspension_reasons:
            raise _need_reasons(i)
        expected = r.expected_at if r.expected_at is not None else at + EXPECTED_DELAY[r.state]
        if expected < at:
            raise InvalidTimeline(
                f"participation_state[{i}] expects {r.state.value} at {format_time(expected)}, "
                f"before {format_time(at)}; PENDING expected_at values must not go back in time "
                "nor come before the current state's occurred_at."
            )
        description = r.description or DESCRIPTIONS[r.state]
        out.append(
            Entry(r.state, Status.PENDING, description, None, expected, r.suspension_reasons)
        )
        ret = state if r.state is S.UNENROLMENT_REQUESTED else None
        state, at = r.state, expected
    return tuple(out)


def _default_tail(current: Entry, ret: State | None, base: datetime) -> tuple[Entry, ...]:
    return _pending_entries(expected_path(current.state, ret), base)


def _check_room(participation: Participation, history: list[Entry], new: list[Entry]) -> None:
    """MAX_HISTORY: past its reserve, only the moves that end a participation are taken."""
    if len(history) <= MAX_HISTORY - LEAVING_RESERVE:
        return
    if all(entry.state in LEAVING_STEPS for entry in new):
        return
    ending = ", ".join(s.value for s in State if s in LEAVING_STEPS)
    raise TimelineFull(
        f"{participation.id} holds {len(participation.history)} timeline entries; a "
        f"participation keeps at most {MAX_HISTORY}, so from "
        f"{MAX_HISTORY - LEAVING_RESERVE} on it accepts only the moves that end it ({ending}). "
        f"Unenrol it (UNENROLMENT_REQUESTED, WINDING_DOWN, UNENROLLED, OFFBOARDED) and create "
        f"a new participation for device {participation.device_id} to go on."
    )


def apply_update(
    participation: Participation, records: Sequence[Record], now: datetime
) -> Participation:
    """Apply an update request; return the new participation or raise a LifecycleError."""
    now = _floor(now)
    _check_shape(records)
    pivot = next(i for i, r in enumerate(records) if r.status is Status.IN_PROGRESS)
    steps, pending = records[: pivot + 1], records[pivot + 1 :]
    current = participation.current
    history = list(participation.history)
    ret_entry = participation.return_state
    ret = ret_entry.state if ret_entry else None

    head = steps[0]
    resubmission = (
        len(steps) == 1
        and head.state is current.state
        and (
            head.state is not S.SUSPENDED
            or set(head.suspension_reasons) == set(current.suspension_reasons)
        )
    )
    if resubmission:
        if not pending:
            return participation
        base = max(current.occurred_at or now, now)
        tail = _build_tail(pending, current.state, ret, base, pivot + 1)
        if tail == participation.pending:
            return participation
        return dataclasses.replace(
            participation,
            timeline=(*history, *tail),
            time_updated=max(participation.time_updated, now),
        )

    state = current.state
    last_at = current.occurred_at or participation.time_created
    new_entries: list[Entry] = []
    for i, r in enumerate(steps):
        if not is_legal(state, r.state, ret):
            recorded = i == 0 and any(e.state is r.state for e in participation.history)
            raise _illegal(participation.id, state, r.state, ret, recorded)
        # A time the server assigns never goes back: another writer may have stored a later
        # second between this request's clock reading and its turn to write.
        occurred = r.occurred_at if r.occurred_at is not None else max(now, last_at)
        if r.occurred_at is not None and occurred > now:
            raise InvalidTimeline(
                f"participation_state[{i}] has occurred_at {format_time(occurred)}, which is "
                f"in the future (now is {format_time(now)}); omit it to use the time of the "
                "request."
            )
        if occurred < last_at:
            raise InvalidTimeline(
                f"participation_state[{i}] has occurred_at {format_time(occurred)}, before "
                f"{format_time(last_at)} when {state.value} was reached; times must not go back."
            )
        reasons = r.suspension_reasons
        if r.state is S.SUSPENDED and not reasons:
            if state is S.UNENROLMENT_REQUESTED and ret_entry is not None and ret is S.SUSPENDED:
                reasons = ret_entry.suspension_reasons  # cancelled leave request: restore
            else:
                raise _need_reasons(i)
        next_ret_entry = history[-1] if r.state is S.UNENROLMENT_REQUESTED else None
        history[-1] = dataclasses.replace(history[-1], status=Status.COMPLETE)
        entry = Entry(
            r.state,
            Status.IN_PROGRESS,
            r.description or DESCRIPTIONS[r.state],
            occurred,
            None,
            reasons,
        )
        history.append(entry)
        new_entries.append(entry)
        ret_entry = next_ret_entry
        ret = ret_entry.state if ret_entry else None
        state, last_at = r.state, occurred

    _check_room(participation, history, new_entries)
    new_current = history[-1]
    base = max(last_at, now)
    if pending:
        tail = _build_tail(pending, new_current.state, ret, base, pivot + 1)
    else:
        tail = _default_tail(new_current, ret, base)
    return dataclasses.replace(
        participation,
        timeline=(*history, *tail),
        time_updated=max(participation.time_updated, now),
    )

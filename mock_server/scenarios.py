"""Scenario devices: fixed device ids whose participations take a chosen path under the autopilot.

Like a payment sandbox's test card numbers. Pure domain, like `mock_server.lifecycle`: data and
functions over it, no clock reads, no I/O. The sandbox's autopilot (`mock_server.store`) plays
it; `fixtures` uses it to build worlds (and re-exports it as `fixtures.scenarios`).

How the autopilot consumes this (`next_step` is the whole rule):

- If the scenario has an *override* for the current state, the participation moves to the
  override's state `delay` after the current entry's `occurred_at` (an override of ``None`` means
  *hold*: the autopilot leaves the participation alone in that state).
- Otherwise it follows the participation's own PENDING tail: the first PENDING entry becomes the
  new current state at its `expected_at` (the lifecycle computes that tail from `EXPECTED_DELAY`,
  so the default is the happy path to ACTIVE, and the leaving path to OFFBOARDED).
- Nothing else moves (ACTIVE without an override, terminal states).

Apply each step with ``apply_update(p, [Record(state, IN_PROGRESS, occurred_at=at, ...)],
now=at)`` so that ``occurred_at`` is the scheduled time and the new PENDING tail is forecast from
it; `advance` does exactly that and is the reference implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from vpp_sandbox.mock_server.lifecycle import (
    EXPECTED_DELAY,
    HAPPY_PATH,
    TERMINAL,
    Participation,
    Reason,
    Record,
    State,
    Status,
    apply_update,
)

__all__ = [
    "DEFAULT_SCENARIO",
    "SCENARIOS",
    "SCENARIO_DEVICES",
    "Due",
    "Scenario",
    "ScenarioDevice",
    "Step",
    "advance",
    "next_step",
    "scenario_for_device",
]

S = State

DEFAULT_SCENARIO = "happy"


@dataclass(frozen=True, slots=True)
class Step:
    """A move the autopilot makes: to `state`, `delay` after the current state was reached."""

    state: State
    delay: timedelta
    suspension_reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named path: where the scenario departs from the server's forecast, and its outcome."""

    name: str
    title: str
    description: str
    outcome: State
    # current state -> the step taken instead of the PENDING tail (None: hold in that state).
    overrides: Mapping[State, Step | None]

    def path(self) -> tuple[tuple[State, timedelta], ...]:
        """The states a fresh participation passes through, each with its time since creation."""
        out: list[tuple[State, timedelta]] = [(S.ENROLMENT_REQUESTED, timedelta(0))]
        at = timedelta(0)
        state = S.ENROLMENT_REQUESTED
        while True:
            if state in self.overrides:
                step = self.overrides[state]
                if step is None:
                    break
                state, at = step.state, at + step.delay
            else:
                following = _happy_next(state)
                if following is None:
                    break
                state, at = following, at + EXPECTED_DELAY[following]
            out.append((state, at))
        return tuple(out)


def _happy_next(state: State) -> State | None:
    if state is S.AWAITING_LOCATION_TELEMETRY:
        return S.CHECKING_ELIGIBILITY
    if state in HAPPY_PATH[:-1]:
        return HAPPY_PATH[HAPPY_PATH.index(state) + 1]
    return None


SCENARIOS: Mapping[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="happy",
            title="Happy path",
            description="Joins on the server's forecast and stays ACTIVE (the default for any "
            "device that is not listed here).",
            outcome=S.ACTIVE,
            overrides={},
        ),
        Scenario(
            name="ineligible",
            title="Ineligible",
            description="Fails the eligibility check: INELIGIBLE two days after "
            "CHECKING_ELIGIBILITY starts.",
            outcome=S.INELIGIBLE,
            overrides={S.CHECKING_ELIGIBILITY: Step(S.INELIGIBLE, timedelta(days=2))},
        ),
        Scenario(
            name="telemetry_never_arrives",
            title="Telemetry never arrives",
            description="The device never sends data: FAILED three days after "
            "AWAITING_DEVICE_TELEMETRY starts.",
            outcome=S.FAILED,
            overrides={S.AWAITING_DEVICE_TELEMETRY: Step(S.FAILED, timedelta(days=3))},
        ),
        Scenario(
            name="telemetry_lost",
            title="Telemetry lost after activation",
            description="Joins normally, then telemetry stops: SUSPENDED for AWAITING_TELEMETRY "
            "a day after each activation, and stays suspended until resumed through the API.",
            outcome=S.SUSPENDED,
            overrides={
                S.ACTIVE: Step(S.SUSPENDED, timedelta(days=1), (Reason.AWAITING_TELEMETRY,)),
                S.SUSPENDED: None,
            },
        ),
        Scenario(
            name="slow_registration",
            title="Slow registration",
            description="The operator takes three weeks to register the device "
            "(REGISTERED 21 days after AWAITING_REGISTRATION starts), then ACTIVE.",
            outcome=S.ACTIVE,
            overrides={S.AWAITING_REGISTRATION: Step(S.REGISTERED, timedelta(days=21))},
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ScenarioDevice:
    """A documented device id, the scenario it triggers, and the device it pretends to be."""

    device_id: str
    location_id: str
    scenario: str
    kind: str
    manufacturer: str
    model_name: str
    model_code: str


SCENARIO_DEVICES: Mapping[str, ScenarioDevice] = {
    d.device_id: d
    for d in (
        ScenarioDevice(
            "dev_5ce0a7100000000000000001", "loc_5ce0a7100000000000000001", "happy",
            "BATTERY_SYSTEM", "Tesla", "Powerwall 3", "1707000-21-J",
        ),
        ScenarioDevice(
            "dev_5ce0a7100000000000000002", "loc_5ce0a7100000000000000002", "ineligible",
            "EV_CHARGER", "myenergi", "zappi v2.1", "ZAPPI-2H07UW",
        ),
        ScenarioDevice(
            "dev_5ce0a7100000000000000003", "loc_5ce0a7100000000000000003",
            "telemetry_never_arrives", "HEAT_PUMP", "Octopus Energy", "Cosy 6", "COSY-6",
        ),
        ScenarioDevice(
            "dev_5ce0a7100000000000000004", "loc_5ce0a7100000000000000004", "telemetry_lost",
            "BATTERY_SYSTEM", "GivEnergy", "All in One", "GIV-AIO-13.5",
        ),
        ScenarioDevice(
            "dev_5ce0a7100000000000000005", "loc_5ce0a7100000000000000005",
            "slow_registration", "PV_SYSTEM", "SolarEdge", "Home Hub", "SE6000H-RWB",
        ),
    )
}


def scenario_for_device(device_id: str) -> str:
    """The scenario a new participation of `device_id` plays: listed devices, else "happy"."""
    device = SCENARIO_DEVICES.get(device_id)
    return device.scenario if device else DEFAULT_SCENARIO


@dataclass(frozen=True, slots=True)
class Due:
    """The next autopilot move of one participation: `state` at the absolute time `at`."""

    state: State
    at: datetime
    suspension_reasons: tuple[Reason, ...] = ()


def next_step(participation: Participation) -> Due | None:
    """The autopilot's next move for `participation` under its own `scenario`, or None."""
    current = participation.current
    if current.state in TERMINAL:
        return None
    scenario = SCENARIOS.get(participation.scenario, SCENARIOS[DEFAULT_SCENARIO])
    if current.state in scenario.overrides:
        step = scenario.overrides[current.state]
        if step is None or current.occurred_at is None:
            return None
        return Due(step.state, current.occurred_at + step.delay, step.suspension_reasons)
    pending = participation.pending
    if not pending:
        return None
    first = pending[0]
    if first.expected_at is None:
        return None
    return Due(first.state, first.expected_at, first.suspension_reasons)


def advance(participation: Participation, until: datetime) -> Participation:
    """Apply every autopilot move due at or before `until`, each at its scheduled time."""
    p = participation
    while (due := next_step(p)) is not None and due.at <= until:
        record = Record(
            due.state, Status.IN_PROGRESS, occurred_at=due.at,
            suspension_reasons=due.suspension_reasons,
        )
        p = apply_update(p, [record], due.at)
    return p

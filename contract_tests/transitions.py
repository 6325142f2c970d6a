"""The transitions suite: every legal edge of the table and the illegal moves from every state,
tried deterministically (one move per request), so the coverage report can show all of them.

`plan()` is pure: routes from ENROLMENT_REQUESTED that together take each of the 36 legal
edges (30 of the table and the six returns of a cancelled leave request). Walking them, the
suite tries the illegal moves of each state on arrival (all of them, or a fixed, spread-out
sample of `Options.illegal_per_state`), resubmits terminal states, and reads back after
every move: the per-response checks judge each answer (the expected PENDING path after each
kind of move, the records kept, rule 12's "a rejection changes nothing"). On arrival in each
state (once per run) it makes §6's cases of that state: a second enrolment, the current state
again, reasons where they do not belong.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from vpp_sandbox.contract_tests import model
from vpp_sandbox.contract_tests import scripted_checks as sc
from vpp_sandbox.contract_tests.report import Options, SuiteResult
from vpp_sandbox.contract_tests.session import Session
from vpp_sandbox.contract_tests.suites import obj, read_back, timed

__all__ = ["illegal_targets", "plan", "run_transitions"]

Node = tuple[str, str | None]  # (state, the state held before it: matters for a leave request)


def _next(node: Node) -> list[str]:
    state, before = node
    allowed = model.allowed_after(state, before if state == "UNENROLMENT_REQUESTED" else None)
    # Non-terminal targets first keeps a route alive; table order keeps it deterministic.
    return sorted(allowed, key=lambda s: (s in model.TERMINAL, model.STATES.index(s)))


def _route_to_uncovered(start: Node, uncovered: set[tuple[str, str]]) -> list[str] | None:
    """Shortest list of states leading from `start` to a node with an uncovered edge."""
    queue: deque[tuple[Node, list[str]]] = deque([(start, [])])
    seen = {start}
    while queue:
        node, path = queue.popleft()
        if any((node[0], t) in uncovered for t in _next(node)):
            return path
        for t in _next(node):
            child = (t, node[0])
            if child not in seen:
                seen.add(child)
                queue.append((child, [*path, t]))
    return None


def plan() -> list[list[str]]:
    """Routes (the states to move to, from a new participation) that take every legal edge."""
    uncovered = set(model.LEGAL_EDGES)
    routes: list[list[str]] = []
    while uncovered:
        node: Node = ("ENROLMENT_REQUESTED", None)
        route: list[str] = []
        while True:
            fresh = [t for t in _next(node) if (node[0], t) in uncovered]
            steps = [fresh[0]] if fresh else _route_to_uncovered(node, uncovered)
            if not steps:
                break
            for t in steps:
                uncovered.discard((node[0], t))
                route.append(t)
                node = (t, node[0])
        if not route:
            raise RuntimeError(f"edges unreachable from ENROLMENT_REQUESTED: {uncovered}")
        routes.append(route)
    return routes


def illegal_targets(state: str, before: str | None, per_state: int | None) -> list[str]:
    """The illegal moves to try from `state`: all, or `per_state` of them spread over the
    table (the same ones every run)."""
    allowed = model.allowed_after(state, before)
    targets = [t for t in model.STATES if t != state and t not in allowed]
    if per_state is None or per_state >= len(targets):
        return targets
    # Rotate by the state's position so different states sample different targets.
    shift = model.STATES.index(state) % len(targets)
    rotated = targets[shift:] + targets[:shift]
    step = len(rotated) / per_state
    return [rotated[int(i * step)] for i in range(per_state)]


def _record(state: str, current: str, reasons: list[str], turn: int) -> dict[str, Any]:
    record: dict[str, Any] = {"state": state, "status": "IN_PROGRESS"}
    if state == "SUSPENDED" and current != "UNENROLMENT_REQUESTED":
        # Reasons that differ from the ones held, so SUSPENDED -> SUSPENDED is a real move.
        options = [r for r in model.REASONS if r not in reasons]
        record["suspension_reasons"] = [options[turn % len(options)]]
    return record  # a cancelled leave request back to SUSPENDED sends none: they are restored


def run_transitions(session: Session, options: Options) -> SuiteResult:
    def body() -> None:
        tried: dict[str, set[str]] = {}
        arrived: set[str] = set()
        for turn, route in enumerate(plan()):
            _walk_route(session, route, options.illegal_per_state, tried, turn, arrived)
        for state in model.STATES:
            if state not in arrived:
                for check in (sc.duplicate_enrolment_refused, sc.malformed_update_refused):
                    session.skip(check, f"no route reached {state}: its §6 cases were not tried")

    return timed("transitions", session, body)


def _walk_route(
    session: Session,
    route: list[str],
    per_state: int | None,
    tried: dict[str, set[str]],
    turn: int,
    arrived: set[str],
) -> None:
    created = session.create()
    if not session.expect(sc.well_formed_create_accepted, created):
        return
    p = obj(created)
    pid, device = str(p["id"]), str(p["device_id"])
    programme = str((p.get("programme") or {}).get("id"))
    node: Node = ("ENROLMENT_REQUESTED", None)
    reasons: list[str] = []
    for i, target in enumerate([*route, None]):
        if not _try_illegal(session, pid, node, per_state, tried):
            return  # an illegal move was taken: the route is off the table
        if node[0] not in arrived:
            arrived.add(node[0])
            _on_arrival(session, pid, device, programme, node[0], reasons)
        if target is None:
            break
        record = _record(target, node[0], reasons, turn + i)
        answer = session.update(pid, [record])
        if not session.expect(sc.legal_move_accepted, answer, pid, node[0], target):
            return
        reasons = list(obj(answer).get("suspension_reasons") or [])
        node = (target, node[0])
        session.retrieve(pid)  # rule 10: read back as written
    read_back(session, pid, device)  # and listed for its device


def _on_arrival(
    session: Session, pid: str, device: str, programme: str, state: str, reasons: list[str]
) -> None:
    """§6 in every state, its legal and illegal sides, once each: a second enrolment of the
    device (409 while not terminal, 201 once terminal); the current state again (200, nothing
    changes, terminal states included); reasons where they do not belong (400: on a state
    other than SUSPENDED, or SUSPENDED without any)."""
    again = session.create(device_id=device, programme_id=programme)
    if state in model.TERMINAL:
        session.expect(sc.terminal_frees_the_device, again, pid)
    else:
        session.expect(sc.duplicate_enrolment_refused, again, pid)
    same: dict[str, Any] = {"state": state, "status": "IN_PROGRESS"}
    if state == "SUSPENDED":
        same["suspension_reasons"] = reasons
    resubmitted = session.update(pid, [same])
    session.expect(sc.legal_move_accepted, resubmitted, pid, state, state)
    wrong: dict[str, Any] = {"state": state, "status": "IN_PROGRESS"}
    if state != "SUSPENDED":
        wrong["suspension_reasons"] = ["OPERATOR_REQUEST"]
    refused = session.update(pid, [wrong])
    what = ("SUSPENDED without reasons" if state == "SUSPENDED"
            else f"{state} with suspension_reasons")
    session.expect(sc.malformed_update_refused, refused, pid, what)


def _try_illegal(
    session: Session,
    pid: str,
    node: Node,
    per_state: int | None,
    tried: dict[str, set[str]],
) -> bool:
    """Try the state's illegal moves not yet tried; False when the target took one."""
    state, before = node
    done = tried.setdefault(state, set())
    targets = [
        t for t in illegal_targets(state, before if state == "UNENROLMENT_REQUESTED" else None,
                                   None)
        if t not in done
    ]
    wanted = set(illegal_targets(state, None, per_state)) if per_state is not None else None
    if state == "UNENROLMENT_REQUESTED" and wanted is not None:
        wanted |= {t for t in model.RETURNABLE if t != before}  # the wrong way back
    attempts = [t for t in targets if wanted is None or t in wanted]
    if per_state is not None:
        attempts = attempts[:per_state]
    for target in attempts:
        done.add(target)
        record: dict[str, Any] = {"state": target, "status": "IN_PROGRESS"}
        if target == "SUSPENDED":
            record["suspension_reasons"] = ["OPERATOR_REQUEST"]
        answer = session.update(pid, [record])
        session.expect(sc.illegal_move_refused, answer, pid, state, target)
        if 200 <= answer.status < 300:
            return False
    if attempts:
        session.retrieve(pid)  # rule 12: the rejected moves left it exactly as it was
    return True

"""Integration coverage: what an integrator's own tests drove their client through.

Read from the sandbox before each test's account is deleted: the participations of the
namespaces it used (the states and transitions their timelines reached during the test, and
the suspension reasons) and the request journal (the statuses and error codes the VPP API
answered). Summed over the session, and over xdist workers, then set against the whole
contract: every state, every legal transition, every reason, every error a client must handle.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Coverage", "catalogue"]

# The error answers a client of the API must be ready for (contract section 7), as counted.
ERRORS = (
    "400",
    "401",
    "404",
    "409 invalid_state_transition",
    "409 participation_exists",
    "409 timeline_full",
    "409 namespace_full",
    "429",
    "5xx",
)
REASONS = (
    "AWAITING_TELEMETRY",
    "AWAITING_DISPATCH",
    "AWAITING_CONSENT",
    "OPERATOR_REQUEST",
    "CUSTOMER_REQUEST",
)


def error_kind(status: int, code: str | None) -> str | None:
    """The `ERRORS` item an answer counts for (None for a success or another status)."""
    if status >= 500:
        return "5xx"
    if status == 409:
        return f"409 {code}"
    if status in (400, 401, 404, 429):
        return str(status)
    return None


def catalogue() -> dict[str, list[str]]:
    """Every item of the contract the coverage is measured against, by kind."""
    # The sandbox's own transition table (pure, light): imported when a summary is made.
    from vpp_sandbox.mock_server.lifecycle import TRANSITIONS, State

    edges = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    # A cancelled leave request goes back to the state held before it (contract section 4).
    leaving = State.UNENROLMENT_REQUESTED
    edges |= {(leaving.value, a.value) for a, t in TRANSITIONS.items() if leaving in t}
    return {
        "states": [s.value for s in State],
        "transitions": sorted(f"{a} -> {b}" for a, b in edges),
        "suspension_reasons": list(REASONS),
        "errors": list(ERRORS),
    }


@dataclass
class Coverage:
    """Counts of what the session's tests met, by kind, and the namespaces read only in part."""

    met: dict[str, Counter[str]] = field(
        default_factory=lambda: {kind: Counter() for kind in catalogue_kinds()}
    )
    statuses: Counter[str] = field(default_factory=Counter)
    namespaces: int = 0
    partial: int = 0  # namespaces whose journal was full: older answers were not seen

    # -- reading one namespace ----------------------------------------------------------------

    def add_participation(self, body: dict[str, Any], since: str | None) -> None:
        """The timeline entries that happened in the test (after `since`, when a world was
        loaded at that instant, for the world's own participations)."""
        own = since is None or body["time_created"] > since
        past = [e for e in body["participation_state"] if e["status"] != "PENDING"]
        previous: str | None = None
        for entry in past:
            counts = own or entry["occurred_at"] > since  # type: ignore[operator]
            if counts:
                self.met["states"][entry["state"]] += 1
                if previous is not None:
                    self.met["transitions"][f"{previous} -> {entry['state']}"] += 1
                for reason in entry.get("suspension_reasons") or ():
                    self.met["suspension_reasons"][reason] += 1
            previous = entry["state"]

    def add_answers(self, answers: Iterable[tuple[str, int, str | None]], full: bool) -> None:
        """The journal's (path, status, error code) of the VPP API (control calls are not the
        client's); `full` when the journal held as many as it keeps."""
        self.namespaces += 1
        self.partial += int(full)
        for path, status, code in answers:
            if path.startswith("/_sandbox"):
                continue
            self.statuses[f"{status} {code}" if code else str(status)] += 1
            kind = error_kind(status, code)
            if kind is not None:
                self.met["errors"][kind] += 1

    # -- summing and judging ------------------------------------------------------------------

    def merge(self, other: Coverage) -> None:
        for kind, counts in other.met.items():
            self.met[kind].update(counts)
        self.statuses.update(other.statuses)
        self.namespaces += other.namespaces
        self.partial += other.partial

    def to_json(self) -> dict[str, Any]:
        items = catalogue()
        missed = {k: [i for i in items[k] if not self.met[k][i]] for k in items}
        total = sum(len(v) for v in items.values())
        met = total - sum(len(v) for v in missed.values())
        return {
            "percent": round(100.0 * met / total, 1),
            "met": {k: dict(sorted(self.met[k].items())) for k in items},
            "never": missed,
            "items": {"met": met, "total": total},
            "statuses": dict(sorted(self.statuses.items())),
            "namespaces": self.namespaces,
            "namespaces_read_in_part": self.partial,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Coverage:
        made = cls()
        for kind, counts in data["met"].items():
            made.met[kind].update(counts)
        made.statuses.update(data["statuses"])
        made.namespaces = int(data["namespaces"])
        made.partial = int(data["namespaces_read_in_part"])
        return made

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def render(self) -> list[str]:
        """The lines of the end-of-session summary."""
        data = self.to_json()
        items = catalogue()
        lines = [
            f"Integration coverage of your tests: {data['percent']}% "
            f"({data['items']['met']} of {data['items']['total']} items, "
            f"{self.namespaces} namespaces)"
        ]
        for kind, label in (
            ("states", "states reached"),
            ("transitions", "transitions taken"),
            ("suspension_reasons", "suspension reasons"),
            ("errors", "error answers your client got"),
        ):
            met = data["met"][kind]
            shown = ", ".join(f"{name} x{n}" for name, n in met.items()) or "none"
            lines.append(f"  {label} ({len(met)}/{len(items[kind])}): {shown}")
        never = data["never"]
        plain = [*never["states"], *never["suspension_reasons"], *never["errors"]]
        lines.append(f"  never saw: {', '.join(plain) or 'nothing: every state, reason, error'}")
        if never["transitions"]:
            lines.append(f"  transitions never taken: {', '.join(never['transitions'])}")
        if self.partial:
            lines.append(
                f"  ({self.partial} namespaces made more requests than the journal keeps: their "
                "oldest answers were not counted)"
            )
        return lines


def catalogue_kinds() -> tuple[str, ...]:
    return ("states", "transitions", "suspension_reasons", "errors")

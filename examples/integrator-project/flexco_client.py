"""FlexCo's client of the Flatpeak VPP participations API: enrol devices, follow their onboarding.

A small, typed client as an integrator writes it: it logs in with HTTP Basic, keeps the bearer
token, retries a `429 rate_limited` after the `Retry-After` seconds, and turns errors into
`ApiError` with the API's code and message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

__all__ = ["ApiError", "FlexcoClient", "Participation", "outcome"]

JOINING = {
    "ENROLMENT_REQUESTED",
    "AWAITING_CUSTOMER_CONSENT",
    "AWAITING_DEVICE_TELEMETRY",
    "AWAITING_LOCATION_TELEMETRY",
    "CHECKING_ELIGIBILITY",
    "AWAITING_REGISTRATION",
    "REGISTERED",
}
LEAVING = {"UNENROLMENT_REQUESTED", "WINDING_DOWN", "UNENROLLED", "OFFBOARDED"}


class ApiError(Exception):
    """An error answer of the API: HTTP status, the error object's code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Participation:
    """The fields of a VPP participation FlexCo's app shows its customers."""

    id: str
    device_id: str
    programme_id: str
    current_state: str
    control_active: bool
    suspension_reasons: tuple[str, ...]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Participation:
        return cls(
            id=body["id"],
            device_id=body["device_id"],
            programme_id=body["programme"]["id"],
            current_state=body["current_state"],
            control_active=body["control_active"],
            suspension_reasons=tuple(body["suspension_reasons"]),
        )


def outcome(p: Participation) -> str:
    """What the app tells the customer: joining, active, suspended, leaving or failed."""
    if p.current_state in JOINING:
        return "joining"
    if p.current_state in LEAVING:
        return "leaving"
    if p.current_state in ("INELIGIBLE", "FAILED"):
        return "failed"
    return p.current_state.lower()  # active, suspended


class FlexcoClient:
    """One account's key; `session` and `sleep` can be swapped (tests, connection pools)."""

    def __init__(
        self,
        base_url: str,
        account_id: str,
        api_key: str,
        *,
        session: requests.Session | None = None,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.account_id = account_id
        self.api_key = api_key
        self.session = session or requests.Session()
        self.max_retries = max_retries
        self.sleep = sleep
        self._token: str | None = None

    def _login(self) -> str:
        r = self.session.get(
            self.base_url + "/login", auth=(self.account_id, self.api_key), timeout=30
        )
        token: str = self._json(r)["bearer_token"]
        return token

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        for attempt in range(self.max_retries + 1):
            if self._token is None:
                self._token = self._login()
            r = self.session.request(
                method,
                self.base_url + path,
                json=body,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=30,
            )
            if r.status_code == 401:
                self._token = None  # expired: log in again once
                if attempt == 0:
                    continue
            if r.status_code == 429 and attempt < self.max_retries:
                self.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            return self._json(r)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json(r: requests.Response) -> Any:
        if r.ok:
            return r.json()
        try:
            error = r.json()
            raise ApiError(r.status_code, error["code"], error["message"])
        except (ValueError, KeyError):
            raise ApiError(r.status_code, "unknown", r.text) from None

    def enrol(
        self,
        device_id: str,
        provider_id: str,
        programme_id: str,
        reference_id: str | None = None,
    ) -> Participation:
        """Ask the programme provider to enrol a customer's device."""
        body = {"device_id": device_id, "provider_id": provider_id, "programme_id": programme_id}
        if reference_id is not None:
            body["reference_id"] = reference_id
        return Participation.from_json(self._request("POST", "/vpp-participations", body))

    def participation(self, participation_id: str) -> Participation:
        return Participation.from_json(
            self._request("GET", f"/vpp-participations/{participation_id}")
        )

    def participations_of(self, device_id: str) -> list[Participation]:
        """The device's participations, newest first (the first page)."""
        page = self._request("GET", f"/vpp-participations?device_id={device_id}&limit=100")
        return [Participation.from_json(p) for p in page["data"]]

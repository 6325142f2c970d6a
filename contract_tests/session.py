"""A suite's connection to the target: logins, checked calls and the failures they produced."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, ParamSpec

from vpp_sandbox.contract_tests.checks import judge
from vpp_sandbox.contract_tests.findings import Check, Violation
from vpp_sandbox.contract_tests.ledger import Identity, Ledger
from vpp_sandbox.contract_tests.report import Failure
from vpp_sandbox.contract_tests.target import Credentials, Exchange, HttpClient, Target

__all__ = ["Session", "random_id"]

VPP = "/vpp-participations"
P = ParamSpec("P")


def random_id(prefix: str) -> str:
    """A fresh well-formed id (`dev_`, `prv_`, `vpr_`…): suites never reuse another's device."""
    return f"{prefix}_{secrets.token_hex(12)}"


class Session:
    """Calls made through a Session are checked against every rule as they happen."""

    def __init__(self, target: Target, ledger: Ledger | None = None, suite: str = "-") -> None:
        self.target = target
        self.ledger = ledger if ledger is not None else Ledger()
        self.suite = suite
        self.client: HttpClient = target.client()
        self.failures: list[Failure] = []
        self.calls = 0
        self._tokens: dict[Credentials, str] = {}

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Replace live secrets in a reproduction command by shell variables."""
        for token in self._tokens.values():
            text = text.replace(token, "$VPP_TOKEN")
        for creds in (self.target.credentials, self.target.second):
            if creds is not None:
                text = text.replace(creds.basic[len("Basic ") :], "$VPP_BASIC")
                text = text.replace(creds.api_key, "$VPP_API_KEY")
        return text

    def record(self, violation: Violation) -> None:
        """Keep a broken rule as a Failure, with a reproduction of its exchange."""
        exchange = violation.exchange
        curl = self.redact(exchange.curl()) if exchange is not None else ""
        self.failures.append(Failure.of(self.suite, violation, curl))

    def error(self, check: str, message: str) -> None:
        """The suite itself could not go on (a dead server, a bug): reported, never passed."""
        self.failures.append(Failure(self.suite, "-", check, message, kind="error"))

    def expect(self, check: Check[P], *args: P.args, **kwargs: P.kwargs) -> bool:
        """Make a scripted check: counted in coverage; False (and a failure) when it broke."""
        coverage = self.ledger.coverage
        try:
            judged = check(*args, **kwargs)
        except Violation as violation:
            coverage.judged(self.suite, check.__name__, ok=False)
            self.record(violation)
            return False
        if judged:
            coverage.judged(self.suite, check.__name__, ok=True)
        return True

    def skip(self, check: Check[Any], reason: str) -> None:
        """A check this suite cannot make here: reported SKIPPED with the reason, never PASS."""
        self.ledger.coverage.skip(self.suite, check.__name__, reason)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Exchange:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        exchange = self.client.request(method, path, headers=sent, query=query, body=body)
        self.calls += 1
        for violation in judge(self.ledger, exchange, self.suite):
            self.record(violation)
        return exchange

    def token(self, creds: Credentials | None = None) -> str:
        """A bearer token for `creds` (the target's first account by default), cached."""
        creds = creds or self.target.credentials
        if creds not in self._tokens:
            exchange = self.call("GET", "/login", headers={"Authorization": creds.basic})
            data = exchange.data if isinstance(exchange.data, dict) else {}
            token = data.get("bearer_token")
            if exchange.status != 200 or not isinstance(token, str):
                detail = data.get("message") or exchange.text[:300]
                raise RuntimeError(
                    f"GET /login for {creds.account_id} answered {exchange.status}: {detail} "
                    "Check --account-id and --api-key."
                )
            self._tokens[creds] = token
            self.ledger.add_token(token, Identity(creds.account_id, creds.live_mode))
        return self._tokens[creds]

    # -- the API ----------------------------------------------------------------------------

    def create(self, creds: Credentials | None = None, **fields: Any) -> Exchange:
        body = {
            "device_id": random_id("dev"),
            "provider_id": random_id("prv"),
            "programme_id": random_id("vpr"),
            **fields,
        }
        return self.call("POST", VPP, token=self.token(creds), body=body)

    def retrieve(self, pid: str, creds: Credentials | None = None) -> Exchange:
        return self.call("GET", f"{VPP}/{pid}", token=self.token(creds))

    def update(
        self, pid: str, records: list[dict[str, Any]], creds: Credentials | None = None
    ) -> Exchange:
        body = {"participation_state": records}
        return self.call("POST", f"{VPP}/{pid}", token=self.token(creds), body=body)

    def list(self, creds: Credentials | None = None, **query: Any) -> Exchange:
        return self.call("GET", VPP, token=self.token(creds), query=query)

"""A correct implementation written by someone else passes every profile: the independent one of
tests/independent_impl.py (written from the spec and the contract alone, with other choices
where the spec leaves them open) gets no failure, only advice where it answers outside the
spec's operations its own way."""

from __future__ import annotations

import os

import pytest
from starlette.types import Message, Receive, Scope, Send

from tests.contract_defects import SECOND
from tests.independent_impl import Independent, build
from vpp_sandbox.contract_tests.runner import SUITES, options_for, run_suites
from vpp_sandbox.contract_tests.target import Credentials, Target
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

SEED = 20261207
# thorough takes about 6 minutes here (25,000 cases; 1,000 examples per operation, 400 walks):
# more than `make test` may spend, so it runs when asked (and nightly): VPP_CONTRACT_THOROUGH=1.
THOROUGH = os.environ.get("VPP_CONTRACT_THOROUGH") == "1"


def _impl() -> Independent:
    keys: dict[str, tuple[str, ...]] = {}
    for account in (*DEFAULT_ACCOUNT, SECOND):
        keys[account.account_id] = (*keys.get(account.account_id, ()), account.api_key)
    return build(keys)


def _target(impl: Independent) -> Target:
    first = DEFAULT_ACCOUNT[0]
    return Target(Credentials(first.account_id, first.api_key), app=impl.app,
                  second=Credentials(SECOND.account_id, SECOND.api_key), jwt_secret=impl.secret)


@pytest.mark.parametrize("profile", [
    "quick",
    pytest.param("default", marks=pytest.mark.slow),
    pytest.param("thorough", marks=[pytest.mark.slow, pytest.mark.skipif(
        not THOROUGH, reason="about 6 minutes: set VPP_CONTRACT_THOROUGH=1")]),
])
def test_an_independent_implementation_passes_every_profile(profile: str) -> None:
    report = run_suites(_target(_impl()), options_for(profile, seed=SEED), profile=profile)
    assert report.passed, report.render()
    assert [s.name for s in report.suites] == list(SUITES)
    assert all(s.cases > 0 and not s.skipped for s in report.suites)
    assert report.summary.edges_taken == 36 and report.summary.illegal_tried == 181
    # Its own 404 and 405 outside the operations (plain text, as Starlette answers) are advice.
    advice = {f.check for f in report.advice_findings}
    assert advice == {"outside_the_spec_answered_as_the_sandbox"}, report.render()


def test_outside_the_spec_only_http_binds() -> None:
    """The same implementation without an Allow header on its 405 breaks HTTP: a failure."""
    impl = _impl()
    inner = impl.app

    async def no_allow(scope: Scope, receive: Receive, send: Send) -> None:
        async def strip(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    (k, v) for k, v in message["headers"] if k.lower() != b"allow"]}
            await send(message)

        await inner(scope, receive, strip)

    impl.app = no_allow
    report = run_suites(_target(impl), options_for("quick", seed=SEED), ["cross-request"])
    assert not report.passed
    assert {f.check for f in report.findings} == {"http_rules_hold_outside_the_spec"}

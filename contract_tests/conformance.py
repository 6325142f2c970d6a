"""Conformance and link-driven stateful suites: the Schemathesis engine with our checks added.

The engine (what ``st run`` drives) is used directly rather than pytest: it runs the examples,
coverage, fuzzing and stateful phases with one config, works in-process (``schema.app``) and
over HTTP alike, and hands back each failure with its check name and a curl command.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema

from vpp_sandbox import openapi
from vpp_sandbox.contract_tests import checks
from vpp_sandbox.contract_tests.findings import Violation
from vpp_sandbox.contract_tests.ledger import operation_of
from vpp_sandbox.contract_tests.report import Failure, Options, SuiteResult
from vpp_sandbox.contract_tests.session import Session

__all__ = ["BUILTIN_RULES", "EXPECTED_STATUSES", "run_conformance", "run_stateful"]

# The contract rule each of Schemathesis' own checks judges (a finding is named by its rule).
BUILTIN_RULES = {
    "not_a_server_error": "§7",
    "status_code_conformance": "§2",
    "content_type_conformance": "§2",
    "response_headers_conformance": "§2",
    "response_schema_conformance": "§2",
    "negative_data_rejection": "§6",
    "positive_data_acceptance": "§6",
    "missing_required_header": "§6",
    "ignored_auth": "14",
    "use_after_free": "10",
    "ensure_resource_availability": "10",
    "unsupported_method": "§7",
    "max_response_time": "§7",
}
# Schemathesis' checks that judge what one of ours judges on the same answer: when both fail
# on one case, ours (which names the rule and the participation) is the finding.
_SAME_AS_OURS = {
    "negative_data_rejection": "invalid_request_refused",
    "not_a_server_error": "server_never_errs",
}

# Statuses a schema-valid request may legitimately get (ST202 otherwise): a random cursor is
# unknown, or both cursors are sent (400, trap T10), a random id is someone else's or nobody's
# (404), a random update is an illegal move or a malformed timeline (409/400: OpenAPI 3.0
# cannot say "exactly one IN_PROGRESS record"), a random device is already enrolled (409).
# openapi/schemathesis.toml says the same for plain `st run` (a test keeps them equal).
EXPECTED_STATUSES = {
    "GET /vpp-participations": ["2xx", 400],
    "POST /vpp-participations": ["2xx", 409],
    "GET /vpp-participations/{participation_id}": ["2xx", 404],
    "POST /vpp-participations/{participation_id}": ["2xx", 400, 404, 409],
}


def _config(session: Session, options: Options, phases: tuple[str, ...]) -> dict[str, Any]:
    creds = session.target.credentials
    enabled = {name: {"enabled": name in phases} for name in ("examples", "coverage", "fuzzing")}
    stateful: dict[str, Any] = {"enabled": "stateful" in phases}
    if "stateful" in phases:
        stateful["max-steps"] = max(2, options.stateful_steps)
        # Inferred links depend on server-wide state and make replays flaky (trap T11).
        stateful["inference"] = {"algorithms": []}
        stateful["generation"] = {"max-examples": options.stateful_examples}
    config: dict[str, Any] = {
        "base-url": session.target.base_url,
        "workers": 1,
        "generation": {"max-examples": options.max_examples, "mode": "all", "database": "none"},
        "phases": {**enabled, "stateful": stateful},
        "auth": {
            "openapi": {
                "bearerAuth": {"bearer": session.token(creds)},
                "basicAuth": {"username": creds.account_id, "password": creds.api_key},
            }
        },
        "output": {"sanitization": {"enabled": False}},
        # Rule 14 is ours on every operation (the security suite, seven kinds of bad token),
        # and so are the answers to undeclared methods (only HTTP's Allow on a 405 binds,
        # http_rules_hold_outside_the_spec): Schemathesis' own would report them again, and
        # would require a 405 where RFC 9110 only recommends one.
        "checks": {"ignored_auth": {"enabled": False}, "unsupported_method": {"enabled": False}},
        "operations": [
            {
                "include-name": name,
                "checks": {"positive_data_acceptance": {"expected-statuses": statuses}},
            }
            for name, statuses in EXPECTED_STATUSES.items()
        ],
    }
    if options.seed is not None:
        config["seed"] = options.seed
    return config


def _run(session: Session, options: Options, name: str, phases: tuple[str, ...]) -> SuiteResult:
    started = time.monotonic()
    result = SuiteResult(name)
    config = SchemathesisConfig.from_dict(_config(session, options, phases))
    schema = schemathesis.openapi.from_dict(openapi.load(), config=config)
    if session.target.in_process:
        schema.app = session.target.app
    checks.activate(session.ledger, session.target.base_url, name)
    try:
        _collect(from_schema(schema).execute(), session, name, result)
    finally:
        checks.activate(None)
    result.seconds = time.monotonic() - started
    return result


def _builtin(name: str, node: Any, info: Any, curl: str, recorder: Any, case_id: str) -> Failure:
    """A failure of one of Schemathesis' own checks, named by the rule it judges."""
    failure = info.failure
    message = str(getattr(failure, "message", "") or failure.title)
    reason = str(getattr(failure, "failure_reason", "") or "")
    interaction = recorder.interactions.get(case_id)
    case = recorder.cases[case_id].value if case_id in recorder.cases else None
    method = interaction.request.method if interaction is not None else getattr(case, "method", "")
    path = case.operation.path if case is not None else ""
    status = interaction.response.status_code if interaction and interaction.response else "-"
    return Failure(
        name, BUILTIN_RULES.get(node.name, "§2"), node.name, f"{failure.title}: {message}", curl,
        kind="schemathesis", cause=f"{failure.title} {reason}; answered {status}".strip(),
        operation=operation_of(str(method), str(path)),
        detail=f"{failure.title}: {message}",
    )


def _collect(stream: Iterable[Any], session: Session, name: str, result: SuiteResult) -> None:
    seen: set[tuple[str, str]] = set()
    for event in stream:
        if isinstance(event, events.ScenarioFinished):
            result.cases += len(event.recorder.cases)
            for case_id, nodes in event.recorder.checks.items():
                ours = {n.name for n in nodes if n.failure_info is not None}
                for node in nodes:
                    info = node.failure_info
                    if info is None or _SAME_AS_OURS.get(node.name) in ours:
                        continue
                    failure = info.failure
                    curl = session.redact(info.code_sample)
                    violation = getattr(failure, "exception", None)
                    if isinstance(violation, Violation):
                        item = Failure.of(name, violation, curl)
                    else:  # one of Schemathesis' own checks
                        item = _builtin(name, node, info, curl, event.recorder, case_id)
                    key = (item.check, item.message)
                    if key not in seen:
                        seen.add(key)
                        result.failures.append(item)
        elif isinstance(event, events.NonFatalError):
            result.failures.append(
                Failure(name, "-", "engine_error", f"{event.label}: {event.info.format()}",
                        kind="error")
            )
        elif isinstance(event, events.FatalError):
            result.failures.append(
                Failure(name, "-", "engine_error", repr(event.exception), kind="error")
            )


def run_conformance(session: Session, options: Options) -> SuiteResult:
    """Every operation: examples, coverage and fuzzing phases, positive and negative data."""
    return _run(session, options, "conformance", ("examples", "coverage", "fuzzing"))


def run_stateful(session: Session, options: Options) -> SuiteResult:
    """Link-driven sequences (create -> update -> retrieve -> list) from the spec's links."""
    return _run(session, options, "stateful", ("stateful",))

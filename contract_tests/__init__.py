"""Contract suites for any implementation of the VPP participations API.

Entry points: `contract_tests.runner.run` (the `vpp-sandbox test` command),
`contract_tests.runner.run_suites` (a Target: a base URL or an in-process ASGI app) and
`contract_tests.checks.judge` / `verdict` (every per-response check on one exchange, for live
traffic: `contract_tests.proxy`). Each check is one function registered with its rule
(`contract_tests.findings`); a broken rule is a `Violation`, and every run counts what it
covered (`contract_tests.coverage`).
This package never imports `mock_server`: the mock is just one target among others.
"""

__all__ = ["checks", "coverage", "findings", "model", "report", "runner", "target"]

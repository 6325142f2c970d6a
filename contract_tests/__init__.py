"""Contract suites for any implementation of the VPP participations API.

Entry points: `contract_tests.runner.run` (the `vpp-sandbox test` command) and
`contract_tests.runner.run_suites` (a Target: a base URL or an in-process ASGI app). The
checks of `contract_tests.checks` are the contract's rules, one predicate each. This package
never imports `mock_server`: the mock is just one target among others.
"""

__all__ = ["checks", "model", "runner", "target"]

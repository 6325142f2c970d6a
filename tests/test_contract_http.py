"""`vpp-sandbox test` over real HTTP against `vpp-sandbox serve` on a loopback port."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract_defects import SECOND
from tests.serve_process import free_port, served
from vpp_sandbox.cli import main
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    accounts = [f"{a.account_id}:{a.api_key}" for a in (*DEFAULT_ACCOUNT, SECOND)]
    args = ["--db", ":memory:"]
    for account in accounts:
        args += ["--account", account]
    with served(*args) as running:
        yield running.base_url


@pytest.mark.slow
def test_the_cli_passes_against_the_served_mock(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit, html = tmp_path / "contract.xml", tmp_path / "contract.html"
    first = DEFAULT_ACCOUNT[0]
    code = main([
        "test", "--base-url", server, "--account-id", first.account_id,
        "--api-key", first.api_key, "--second-account-id", SECOND.account_id,
        "--second-api-key", SECOND.api_key, "--profile", "quick", "--seed", "7",
        "--max-examples", "3", "--junit-xml", str(junit), "--html", str(html),
        "--min-coverage", "60",
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "seed 7" in out and "PASSED" in out
    assert "coverage " in out and "legal edges 36/36" in out
    assert 'id="verdict">PASSED<' in html.read_text()
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [
        "findings", "advice", "rules", "suites", "coverage"]
    ran = {c.get("name", "").split(":")[0] for c in suites[3].findall("testcase")}
    assert ran >= {"conformance", "stateful", "lifecycle", "transitions", "semantics",
                   "cross-request", "security", "isolation", "pagination"}
    assert all(s.get("failures") == "0" for s in suites)
    coverage = next(s for s in suites if s.get("name") == "coverage")
    # Without the server's signing key the expired-token check is SKIPPED, never passed.
    assert any("expired_token_rejected" in (c.get("name") or "")
               and c.find("skipped") is not None for c in coverage.findall("testcase"))


@pytest.mark.slow
def test_a_live_token_cannot_see_test_objects(server: str) -> None:
    from vpp_sandbox.contract_tests.report import Options
    from vpp_sandbox.contract_tests.runner import run_suites
    from vpp_sandbox.contract_tests.target import Credentials, Target

    # The second credential is the same account's live key: only the isolation suite uses it.
    test_key, live_key = DEFAULT_ACCOUNT[0], DEFAULT_ACCOUNT[1]
    target = Target(Credentials(test_key.account_id, test_key.api_key), base_url=server,
                    second=Credentials(live_key.account_id, live_key.api_key))
    report = run_suites(target, Options(seed=1), suites=["isolation"])
    assert report.passed, report.render()
    (isolation,) = report.suites
    assert not isolation.skipped and isolation.cases > 5
    assert report.coverage.checks_exercised() >= {
        "namespaces_are_isolated", "foreign_id_not_found", "not_listed_to_other_namespace"}


@pytest.mark.slow
def test_without_a_second_credential_isolation_is_skipped_with_a_reason(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vpp_sandbox.contract_tests.report import Options
    from vpp_sandbox.contract_tests.runner import run_suites
    from vpp_sandbox.contract_tests.target import Credentials, Target

    first = DEFAULT_ACCOUNT[0]
    target = Target(Credentials(first.account_id, first.api_key), base_url=server)
    report = run_suites(target, Options(seed=1), suites=["security", "isolation"])
    assert report.passed, report.render()
    security, isolation = report.suites
    assert not security.skipped and security.cases > 20
    assert isolation.skipped and "--second-account-id" in isolation.skipped
    assert "SKIP isolation" in report.render()


def test_min_coverage_is_a_percentage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([
            "test", "--base-url", "http://127.0.0.1:9", "--account-id", "acc_x",
            "--api-key", "sk_test_x", "--min-coverage", "120",
        ])
    assert exited.value.code == 2
    assert "--min-coverage: '120' is not a percentage from 0 to 100" in capsys.readouterr().err


def test_an_unreachable_target_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "test", "--base-url", f"http://127.0.0.1:{free_port()}", "--account-id", "acc_x",
        "--api-key", "sk_test_x", "--profile", "quick",
    ])
    assert code == 2
    assert "--base-url (VPP_TEST_BASE_URL)" in (err := capsys.readouterr().err)
    assert "cannot be reached (connection refused)" in err


def test_credentials_that_do_not_log_in_are_exit_code_2(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = DEFAULT_ACCOUNT[0]
    code = main([
        "test", "--base-url", server, "--account-id", first.account_id,
        "--api-key", "sk_test_not_the_key", "--profile", "quick",
    ])
    assert code == 2
    assert "Check --account-id and --api-key" in capsys.readouterr().err

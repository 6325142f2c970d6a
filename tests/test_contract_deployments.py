"""`vpp-sandbox test --profile quick` passes against every deployment of the sandbox.

Quick tries every rule's scripted cases and every class of illegal move; the default
profile's longer random walks run in-process (tests/test_contract_profiles.py), where they cost
a third of the time: what a deployment adds is processes, and quick meets all of them.

One SQLite process, reached through the real `vpp-sandbox proxy` (which must find nothing in
a run that passes: the one full run of the proxy's tests); `serve --workers 2` on one SQLite
file; two replicas on one PostgreSQL database behind a balancer that alternates between them
request by request.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.contract_defects import SECOND
from tests.proxy_process import proxied
from tests.round_robin import round_robin
from tests.serve_process import Served, served
from vpp_sandbox.cli import main
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

pytestmark = pytest.mark.slow
FIRST = DEFAULT_ACCOUNT[0]
ACCOUNTS = [arg for a in (*DEFAULT_ACCOUNT, SECOND)
            for arg in ("--account", f"{a.account_id}:{a.api_key}")]


@pytest.mark.parametrize(
    "deployment", ["sqlite-1-process-behind-the-proxy", "sqlite-2-workers", "postgres-2-replicas"]
)
def test_the_quick_profile_passes(
    deployment: str, tmp_path: Path, request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log, junit = tmp_path / "violations.jsonl", tmp_path / "proxy.xml"
    proxy: Served | None = None
    with ExitStack() as stack:
        if deployment == "sqlite-1-process-behind-the-proxy":
            sandbox = stack.enter_context(served("--db", str(tmp_path / "a.db"), *ACCOUNTS))
            proxy = stack.enter_context(
                proxied(sandbox.base_url, "--log", str(log), "--junit-xml", str(junit))
            )
            base_url = proxy.base_url
        elif deployment == "sqlite-2-workers":
            args = ("--db", str(tmp_path / "b.db"), "--workers", "2", *ACCOUNTS)
            base_url = stack.enter_context(served(*args)).base_url
        else:
            url = request.getfixturevalue("postgres").database()
            replicas = [stack.enter_context(served("--db", url, *ACCOUNTS)).base_url
                        for _ in (1, 2)]
            base_url = stack.enter_context(round_robin(replicas))
        code = main([
            "test", "--base-url", base_url, "--account-id", FIRST.account_id,
            "--api-key", FIRST.api_key, "--second-account-id", SECOND.account_id,
            "--second-api-key", SECOND.api_key, "--profile", "quick", "--seed", "11",
        ])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "PASSED" in out
    if proxy is not None:  # stopped: its summary and JUnit report are written
        _assert_the_proxy_found_nothing(proxy, log, junit)


def _assert_the_proxy_found_nothing(proxy: Served, log: Path, junit: Path) -> None:
    assert "PASSED: no violations" in proxy.output, proxy.output
    assert not log.exists() or log.read_text() == ""
    suite = ET.parse(junit).getroot().find("testsuite")
    # Every rule the proxy reports had something to judge, and none broke.
    assert suite is not None and suite.get("failures") == "0" and suite.get("skipped") == "0"
    exchanges = int(proxy.output.split("vpp-sandbox proxy: ")[-1].split(" exchanges")[0])
    assert exchanges > 1000, proxy.output

"""Plain Schemathesis (`st run --checks all`, no hooks of ours) with the shipped
schemathesis.toml finds nothing wrong with the sandbox: no false alarms for a provider who runs
Schemathesis alone."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.serve_process import ROOT, served
from vpp_sandbox.contract_tests.conformance import EXPECTED_STATUSES
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

CONFIG = ROOT / "openapi" / "schemathesis.toml"


def test_the_toml_and_the_contract_suite_expect_the_same_statuses() -> None:
    config = tomllib.loads(CONFIG.read_text())
    shipped = {
        op["include-name"]: op["checks"]["positive_data_acceptance"]["expected-statuses"]
        for op in config["operations"]
    }
    assert shipped == EXPECTED_STATUSES
    assert config["phases"]["stateful"]["inference"]["algorithms"] == []
    assert set(config["auth"]["openapi"]) == {"basicAuth", "bearerAuth"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with served("--db", ":memory:") as running:
        yield running.base_url


@pytest.mark.slow
def test_st_run_checks_all_reports_no_issue(server: str, tmp_path: Path) -> None:
    account = DEFAULT_ACCOUNT[0]
    login = requests.get(server + "/login", auth=(account.account_id, account.api_key), timeout=10)
    env = {
        **os.environ,
        "VPP_ACCOUNT_ID": account.account_id,
        "VPP_API_KEY": account.api_key,
        "VPP_TOKEN": login.json()["bearer_token"],
        "NO_COLOR": "1",
    }
    st = Path(sys.executable).with_name("st")
    spec = ROOT / "openapi" / "vpp-participations.yaml"
    result = subprocess.run(
        [str(st), "--config-file", str(CONFIG), "run", str(spec), "--url", server,
         "--checks", "all", "--max-examples", "12", "--seed", "1",
         "--generation-database", "none"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "No issues found" in out, out[-4000:]
    assert "Schema-valid request rejected" not in out and "Warnings:" not in out

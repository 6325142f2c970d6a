"""The pytest plugin as an integrator's suite uses it: pytest runs of their own, in parallel too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import requests

from tests.serve_process import ROOT, served
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

pytestmark = pytest.mark.slow

ADMIN = "plugin-tests-admin-key-0123456789"

# An integrator's tests: only the plugin's fixtures and the public HTTP API.
INNER_TESTS = '''
import json, os, re, secrets
from datetime import timedelta

import pytest

from vpp_sandbox.pytest_plugin import SandboxCallError


def record(vpp_account):
    with open(os.environ["RECORD"], "a") as out:
        out.write(json.dumps({"account_id": vpp_account.account_id,
                              "test_key": vpp_account.test_key,
                              "live_key": vpp_account.live_key}) + "\\n")


def enrol(client, device_id=None):
    body = {"device_id": device_id or "dev_" + secrets.token_hex(12),
            "provider_id": "prv_" + "1" * 24, "programme_id": "vpr_" + "2" * 24}
    r = client.post("/vpp-participations", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_credentials_and_a_logged_in_test_mode_client(vpp_account):
    record(vpp_account)
    assert re.fullmatch(r"acc_[0-9a-f]{24}", vpp_account.account_id)
    assert vpp_account.test_key.startswith("sk_test_")
    assert vpp_account.live_key.startswith("sk_live_")
    assert vpp_account.api_key == vpp_account.test_key and not vpp_account.live_mode
    clock = vpp_account.client.get("/_sandbox/clock").json()
    assert clock["account_id"] == vpp_account.account_id and clock["live_mode"] is False
    live = vpp_account.session(live=True)
    assert live.get("/_sandbox/clock").json()["live_mode"] is True
    assert vpp_account.login(live=True) != vpp_account.login()


def test_a_week_takes_a_new_enrolment_to_active(vpp_account):
    record(vpp_account)
    created = enrol(vpp_account.client)
    assert created["current_state"] == "ENROLMENT_REQUESTED"
    vpp_account.advance("P7D")
    got = vpp_account.client.get(f"/vpp-participations/{created['id']}").json()
    assert got["current_state"] == "ACTIVE" and got["control_active"] is True


@pytest.mark.parametrize("n", range(4))
def test_each_test_sees_only_its_own_data(vpp_account, n):
    record(vpp_account)
    assert vpp_account.client.get("/vpp-participations").json()["data"] == []
    mine = enrol(vpp_account.client)
    assert [p["id"] for p in vpp_account.client.get("/vpp-participations").json()["data"]] == [
        mine["id"]]


@pytest.mark.parametrize("vpp_live_mode", [True])
def test_the_client_can_use_the_live_mode(vpp_account):
    record(vpp_account)
    assert vpp_account.api_key == vpp_account.live_key
    assert enrol(vpp_account.client)["live_mode"] is True
    assert vpp_account.advance(60)["live_mode"] is True


def test_clock_autopilot_world_and_scenario_helpers(vpp_account):
    record(vpp_account)
    assert vpp_account.freeze()["frozen"] is True
    before = vpp_account.clock()["now"]
    assert vpp_account.advance(timedelta(days=1))["now"] > before
    assert vpp_account.unfreeze()["frozen"] is False
    assert vpp_account.set_autopilot(False)["autopilot"] is False
    idle = enrol(vpp_account.client)
    vpp_account.advance("P7D")
    assert vpp_account.client.get(f"/vpp-participations/{idle['id']}").json()[
        "current_state"] == "ENROLMENT_REQUESTED"
    assert vpp_account.set_autopilot(True)["autopilot"] is True
    loaded = vpp_account.load_world("demo", seed=0)
    assert loaded["loaded"] > 10 and loaded["deleted"] == 1
    failing = vpp_account.enrol_scenario("telemetry_never_arrives")
    assert failing["device_id"] == "dev_5ce0a7100000000000000003"
    vpp_account.advance("P4D")
    assert vpp_account.client.get(f"/vpp-participations/{failing['id']}").json()[
        "current_state"] == "FAILED"
    with pytest.raises(ValueError, match="unknown scenario"):
        vpp_account.enrol_scenario("lucky")
    with pytest.raises(SandboxCallError) as refused:
        vpp_account.advance("a week")
    assert refused.value.status_code == 400 and "invalid_request_body" in str(refused.value)
'''


def run_inner(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """pytest on INNER_TESTS in a folder of its own, as an integrator's project would."""
    (tmp_path / "test_integrator.py").write_text(INNER_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    record = tmp_path / "accounts.jsonl"
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("VPP_", "PYTEST_"))
    }
    environ.update({"RECORD": str(record), **(env or {})})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


def recorded(tmp_path: Path) -> list[dict[str, str]]:
    lines = (tmp_path / "accounts.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_plugin_starts_a_sandbox_per_worker_and_isolates_parallel_tests(
    tmp_path: Path,
) -> None:
    # vpp_sandbox_args: a conftest gives the servers the plugin starts their own options.
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture(scope='session')\n"
        "def vpp_sandbox_args():\n"
        "    return ['--max-accounts', '1']\n"
    )
    (tmp_path / "test_capped.py").write_text(
        "import pytest\n"
        "from vpp_sandbox.pytest_plugin import SandboxCallError\n\n"
        "def test_one_account_at_a_time(vpp_sandbox, vpp_account):\n"
        "    with pytest.raises(SandboxCallError, match='account_limit_reached'):\n"
        "        vpp_sandbox.create_account()\n"
    )
    code, out = run_inner(tmp_path, "-n", "2")
    assert code == 0, out
    assert "9 passed" in out, out
    accounts = recorded(tmp_path)
    assert len({a["account_id"] for a in accounts}) == len(accounts) == 8


def test_against_a_running_shared_sandbox_every_account_is_deleted_afterwards(
    tmp_path: Path,
) -> None:
    with served("--db", str(tmp_path / "shared.db"), "--admin-key", ADMIN) as running:
        (tmp_path / "suite").mkdir()
        code, out = run_inner(
            tmp_path / "suite",
            "--vpp-base-url",
            running.base_url,
            "--vpp-admin-key",
            ADMIN,
        )
        assert code == 0 and "8 passed" in out, out
        accounts = recorded(tmp_path / "suite")
        assert len(accounts) == 8
        for account in accounts:
            for key in (account["test_key"], account["live_key"]):
                r = requests.get(
                    running.base_url + "/login", auth=(account["account_id"], key), timeout=5
                )
                assert r.status_code == 401, r.text
        default = DEFAULT_ACCOUNT[0]
        r = requests.get(running.base_url + "/login", auth=(default.account_id, default.api_key))
        assert r.status_code == 200
        # Without the admin key the plugin says what the shared sandbox answered.
        (tmp_path / "keyless").mkdir()
        code, out = run_inner(
            tmp_path / "keyless", "-x", env={"VPP_SANDBOX_URL": running.base_url}
        )
        assert code == 1 and "POST /_sandbox/accounts answered 401" in out, out
        assert "give it with --vpp-admin-key" in out, out


def test_against_an_open_sandbox_accounts_delete_themselves(
    tmp_path: Path,
) -> None:
    with served("--db", str(tmp_path / "open.db")) as running:
        (tmp_path / "suite").mkdir()
        code, out = run_inner(
            tmp_path / "suite",
            "-k",
            "week or live_mode",
            env={"VPP_SANDBOX_URL": running.base_url + "/"},
        )
        assert code == 0 and "2 passed" in out, out
        for account in recorded(tmp_path / "suite"):
            r = requests.get(
                running.base_url + "/login",
                auth=(account["account_id"], account["test_key"]),
                timeout=5,
            )
            assert r.status_code == 401, r.text


def test_the_plugin_is_a_pytest11_entry_point_and_the_server_never_imports_pytest() -> None:
    found = {e.name: e.value for e in entry_points(group="pytest11")}
    assert found.get("vpp_sandbox") == "vpp_sandbox.pytest_plugin"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("pytest")]
    probe = (
        "import sys, warnings; warnings.simplefilter('ignore')\n"
        "from vpp_sandbox.cli import main\n"
        "from vpp_sandbox.mock_server.app import create_app\n"
        "from vpp_sandbox.mock_server.settings import Settings\n"
        "import vpp_sandbox.contract_tests.runner\n"
        "create_app(Settings(db=':memory:'))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


# The plugin's per-test controls, helpers and reports, as an integrator's suite uses them.
CONTROL_TESTS = '''
import asyncio, json, os, secrets, time
from datetime import UTC, datetime

import pytest
import requests

from vpp_sandbox import SandboxCallError

BODY = {"provider_id": "prv_" + "1" * 24, "programme_id": "vpr_" + "2" * 24}


def note(**facts):
    with open(os.environ["RECORD"], "a") as out:
        out.write(json.dumps(facts) + "\\\\n")


def enrol(client, **kwargs):
    return client.post("/vpp-participations",
                       json={"device_id": "dev_" + secrets.token_hex(12), **BODY}, **kwargs)


@pytest.mark.vpp_fault("createVppParticipation", 429, times=2, retry_after=2)
def test_a_marker_rate_limits_the_first_creates(vpp_account):
    first = enrol(vpp_account.client, raise_on_error=False)
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    with pytest.raises(SandboxCallError) as loud:
        enrol(vpp_account.client)
    assert loud.value.status_code == 429 and loud.value.code == "rate_limited"
    assert "rate_limited" in str(loud.value)
    assert enrol(vpp_account.client).status_code == 201
    creates = vpp_account.requests("POST", "/vpp-participations")
    assert [r.status for r in creates] == [429, 429, 201]
    assert creates[0].error_code == "rate_limited"


def test_helpers_for_errors_latency_and_dropped_connections(vpp_account):
    vpp_account.fail_next("retrieveVppParticipation", 503, times=1)
    vpp_account.slow_down("listVppParticipations", 0.3)
    vpp_account.drop_next("*")
    assert [f["operation"] for f in vpp_account.faults()] == [
        "retrieveVppParticipation", "listVppParticipations", "*"]
    # The first rule set that matches fires: the 503, then the drop.
    with pytest.raises(SandboxCallError, match="server_busy"):
        vpp_account.client.get("/vpp-participations/vpp_" + "0" * 24)
    with pytest.raises(requests.RequestException):
        vpp_account.client.get("/vpp-participations/vpp_" + "0" * 24)
    started = time.monotonic()
    vpp_account.client.get("/vpp-participations")
    assert time.monotonic() - started >= 0.3
    vpp_account.fail_next("*", 500, times=5)
    assert vpp_account.clear_faults()["deleted"] == 1
    assert vpp_account.client.get("/vpp-participations").status_code == 200


@pytest.mark.vpp_quiet
def test_a_quiet_client_answers_errors(vpp_account):
    assert vpp_account.client.get("/vpp-participations/vpp_" + "0" * 24).status_code == 404


def test_pages_clock_reset_and_a_second_account(vpp_account, vpp_second_account):
    made = [enrol(vpp_account.client).json()["id"] for _ in range(5)]
    walked = [p["id"] for p in vpp_account.participations(page_size=2)]
    assert sorted(walked) == sorted(made)
    assert walked == [p["id"] for p in vpp_account.client.get("/vpp-participations").json()["data"]]
    assert list(vpp_second_account.participations()) == []
    vpp_second_account.client.get("/vpp-participations/" + made[0], raise_on_error=False)
    assert vpp_second_account.requests(status=404)[0].path == "/vpp-participations/" + made[0]
    assert vpp_account.set_clock(datetime(2031, 1, 1, tzinfo=UTC))["now"] == "2031-01-01T00:00:00Z"
    assert vpp_account.reset()["deleted"] == 5
    note(second=vpp_second_account.account_id)


def test_the_async_client(vpp_account):
    async def main():
        async with vpp_account.async_client() as client:
            assert (await client.get("/vpp-participations")).json()["data"] == []
            with pytest.raises(SandboxCallError, match="participation_not_found"):
                await client.get("/vpp-participations/vpp_" + "0" * 24)
    asyncio.run(main())


def test_a_scenario_driven_to_suspended(vpp_account):
    created = vpp_account.enrol_scenario("telemetry_lost")
    vpp_account.advance("P30D")
    got = vpp_account.client.get(f"/vpp-participations/{created['id']}").json()
    note(suspended=got["current_state"])
'''

FAILING_TEST = '''
import secrets

def test_a_duplicate_enrolment(vpp_account):
    body = {"device_id": "dev_" + secrets.token_hex(12), "provider_id": "prv_" + "1" * 24,
            "programme_id": "vpr_" + "2" * 24}
    vpp_account.client.post("/vpp-participations", json=body)
    vpp_account.client.post("/vpp-participations", json=body)
'''


def test_per_test_faults_helpers_a_failing_report_and_the_coverage_of_the_session(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_controls.py").write_text(CONTROL_TESTS)
    (tmp_path / "test_fails.py").write_text(FAILING_TEST)
    coverage = tmp_path / "coverage.json"
    code, out = run_inner(
        tmp_path, "-n", "2", "--vpp-coverage-json", str(coverage), "--vpp-min-coverage", "90"
    )
    # Every control test passes; the failing one fails where it happened, with its story.
    assert "1 failed, 14 passed" in out, out
    assert code == 1, out
    assert "SandboxCallError: POST /vpp-participations answered 409" in out, out
    assert "participation_exists" in out, out
    section = out.split("vpp-sandbox: what the sandbox saw", 1)[1]
    assert "server log: " in section and "serve-0.log" in section, section
    assert "POST /vpp-participations -> 201" in section, section
    assert "POST /vpp-participations -> 409 participation_exists: " in section, section
    # The coverage of the whole session, from both workers.
    summary = out.split("vpp-sandbox integration coverage", 1)[1]
    assert "never saw: " in summary and "--vpp-min-coverage 90: FAILED" in summary, summary
    data = json.loads(coverage.read_text())
    met = data["met"]
    assert {"429", "404", "5xx", "409 participation_exists"} <= set(met["errors"]), met
    assert met["errors"]["429"] == 2, met  # the two creates refused by the marker's rule
    assert "SUSPENDED" in met["states"] and "AWAITING_TELEMETRY" in met["suspension_reasons"]
    assert "ACTIVE -> SUSPENDED" in met["transitions"], met
    assert "timeline_full" in " ".join(data["never"]["errors"]), data["never"]
    assert "OFFBOARDED" in data["never"]["states"]
    assert 0 < data["percent"] < 90


def test_module_options_never_leak_and_xdist_workers_can_share_one_sandbox(
    tmp_path: Path,
) -> None:
    (tmp_path / "capped").mkdir()
    (tmp_path / "capped" / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef vpp_sandbox_args():\n"
        "    return ['--max-accounts', '1']\n"
    )
    (tmp_path / "capped" / "test_capped.py").write_text(
        "import pytest\nfrom vpp_sandbox import SandboxCallError\n\n"
        "def test_one_account_at_a_time(vpp_sandbox, vpp_account):\n"
        "    with pytest.raises(SandboxCallError, match='account_limit_reached'):\n"
        "        vpp_sandbox.create_account()\n"
    )
    (tmp_path / "test_marked.py").write_text(
        "import pytest\nfrom vpp_sandbox import SandboxCallError\n\n"
        "pytestmark = pytest.mark.vpp_sandbox_args('--max-accounts', '2')\n\n"
        "def test_two_accounts(vpp_sandbox, vpp_account, vpp_second_account):\n"
        "    with pytest.raises(SandboxCallError, match='account_limit_reached'):\n"
        "        vpp_sandbox.create_account()\n"
    )
    plain = "".join(
        f"def test_plain_{n}(vpp_sandbox, vpp_account):\n"
        "    import json, os\n"
        "    for _ in range(3):\n"
        "        vpp_sandbox.delete_account(vpp_sandbox.create_account()['account_id'])\n"
        "    with open(os.environ['RECORD'], 'a') as out:\n"
        "        out.write(json.dumps({'base_url': vpp_sandbox.base_url}) + '\\n')\n\n"
        for n in range(6)
    )
    (tmp_path / "test_plain.py").write_text(plain)
    code, out = run_inner(tmp_path, "-n", "2", "--vpp-shared", "-p", "no:randomly")
    assert code == 0 and "16 passed" in out, out
    shared = {r["base_url"] for r in recorded(tmp_path) if "base_url" in r}
    assert len(shared) == 1, shared
    with pytest.raises(requests.ConnectionError):  # stopped with the session
        requests.get(shared.pop() + "/_sandbox/openapi.json", timeout=5)


def test_the_plugin_knows_the_scenario_devices_of_the_server() -> None:
    from vpp_sandbox.account import SCENARIO_KINDS
    from vpp_sandbox.mock_server.scenarios import SCENARIO_DEVICES

    assert {d.scenario: d.device_id for d in SCENARIO_DEVICES.values()} == SCENARIO_KINDS


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "import vpp_sandbox.pytest_plugin\n"
        "heavy = ('requests', 'httpx', 'urllib3', 'filelock', 'connexion', 'starlette', "
        "'schemathesis', 'hypothesis', 'faker')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or "
        "m.startswith('vpp_sandbox.') and m != 'vpp_sandbox.pytest_plugin'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout

"""The command line: one declaration per setting, errors that name what to fix, and `serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.serve_process import ROOT, served
from vpp_sandbox import options
from vpp_sandbox.cli import ContractOptions, ProxyOptions, build_parser, main
from vpp_sandbox.fixtures.worlds import build
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Settings

DEFAULT_ACCOUNT_ID, DEFAULT_TEST_KEY = DEFAULT_ACCOUNT[0].account_id, DEFAULT_ACCOUNT[0].api_key


def vpp_sandbox(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vpp_sandbox", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.mark.parametrize("cls", [Settings, ContractOptions, ProxyOptions], ids=lambda c: c.__name__)
def test_every_setting_is_a_flag_and_a_variable_from_one_declaration(
    cls: type, capsys: pytest.CaptureFixture[str]
) -> None:
    declared = list(options.options_of(cls))
    assert declared
    command = {Settings: "serve", ContractOptions: "test", ProxyOptions: "proxy"}[cls]
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name, option, _ in declared:
        assert option.env is not None and option.env.startswith("VPP_"), name
        assert option.env in shown, f"{command} --help does not name {option.env}"
        if option.flag:
            assert option.flag in shown, f"{command} --help has no {option.flag}"


def test_variables_and_flags_reach_the_settings_and_a_flag_wins() -> None:
    env = {"VPP_PORT": "9001", "VPP_MAX_HEADERS": "12", "VPP_AUTOPILOT": "0",
           "VPP_ACCOUNTS": "acc_x:sk_test_aaaa, acc_y:sk_live_bbbb"}
    from_env = Settings.from_env(env)
    assert (from_env.port, from_env.max_headers, from_env.autopilot) == (9001, 12, False)
    assert [a.account_id for a in from_env.accounts] == ["acc_x", "acc_y"]
    args = build_parser().parse_args(["serve", "--port", "9002", "--access-log"])
    both = Settings.from_env(env, **options.given(args, Settings))
    assert (both.port, both.access_log, both.max_headers) == (9002, True, 12)
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("VPP_PORT", "eighty", "VPP_PORT='eighty': 'eighty' is not a whole number"),
        ("VPP_MAX_BODY_BYTES", "0", "VPP_MAX_BODY_BYTES='0'"),
        ("VPP_HTTP", "spdy", "VPP_HTTP='spdy': 'spdy' is not one of auto, httptools, h11"),
        ("VPP_AUTOPILOT", "maybe", "VPP_AUTOPILOT='maybe'"),
        ("VPP_ACCOUNTS", "nokey", "VPP_ACCOUNTS='nokey'"),
    ],
)
def test_a_bad_variable_is_named(
    variable: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ[variable] = value
    try:
        assert main(["serve"]) == 2
    finally:
        del os.environ[variable]
    assert says in capsys.readouterr().err


def test_the_readme_tables_are_the_declared_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    for cls in (Settings, ContractOptions, ProxyOptions):
        table = options.markdown_table(cls)
        assert table in readme, (
            f"README.md's table of {cls.__name__} is not what the declarations say; paste:\n"
            + table
        )


@pytest.mark.slow
def test_version() -> None:
    done = vpp_sandbox("--version")
    assert done.returncode == 0 and done.stdout.startswith("vpp-sandbox ")


@pytest.mark.slow
def test_test_takes_its_keys_from_variables_and_names_what_is_missing() -> None:
    done = vpp_sandbox("test", "--base-url", "http://127.0.0.1:9")
    assert done.returncode == 2
    assert "--account-id (or VPP_TEST_ACCOUNT_ID), --api-key (or VPP_TEST_API_KEY)" in (
        done.stderr
    )
    env = {"VPP_TEST_ACCOUNT_ID": "acc_x", "VPP_TEST_API_KEY": "sk_test_x"}
    done = vpp_sandbox("test", "--base-url", "http://127.0.0.1:9", env=env)
    assert done.returncode == 2 and "give" not in done.stderr  # the keys came from variables


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("127.0.0.1:8080", "is not an http:// or https:// URL"),
        ("http://127.0.0.1:{closed}", "cannot be reached (connection refused)"),
    ],
)
def test_a_base_url_the_suites_cannot_use_is_one_line_naming_the_option(
    base_url: str, says: str
) -> None:
    env = {"VPP_TEST_ACCOUNT_ID": "acc_x", "VPP_TEST_API_KEY": "sk_test_x"}
    done = vpp_sandbox("test", "--base-url", base_url.format(closed=_closed_port()), env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--base-url (VPP_TEST_BASE_URL)" in lines[0] and says in lines[0]


@pytest.mark.slow
def test_a_wrong_path_says_it_is_not_the_api_root_and_a_busy_port_is_refused_first(
    tmp_path: Path,
) -> None:
    with served("--db", ":memory:", cwd=tmp_path) as running:
        env = {"VPP_TEST_ACCOUNT_ID": "acc_x", "VPP_TEST_API_KEY": "sk_test_x"}
        done = vpp_sandbox("test", "--base-url", running.base_url + "/v9", env=env)
        assert done.returncode == 2
        assert "answered 404, so this is not the API's root" in done.stderr
        port = running.base_url.rsplit(":", 1)[1]
        busy = vpp_sandbox("serve", "--db", ":memory:", "--port", port)
        assert busy.returncode == 2
        assert f"port {port} on 127.0.0.1 is in use" in busy.stderr
        assert "VPP Sandbox" not in busy.stdout and "Try:" not in busy.stdout  # no banner


@pytest.mark.slow
def test_a_world_loaded_into_memory_is_served(tmp_path: Path) -> None:
    """`serve --db :memory: --world demo` serves the world it loaded (it used to load it into
    a store that was closed before the server opened its own)."""
    world = build("demo")
    account = world.accounts[0]
    with served("--db", ":memory:", "--world", "demo", cwd=tmp_path) as running:
        base = running.base_url
        token = requests.get(
            f"{base}/login", auth=(account.account_id, account.test_key), timeout=10
        ).json()["bearer_token"]
        listed: list[str] = []
        url = f"{base}/vpp-participations?limit=100"
        while url:
            page = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert page.status_code == 200, page.text
            body = page.json()
            listed += [p["id"] for p in body["data"]]
            url = (
                f"{base}/vpp-participations?limit=100&starting_after={listed[-1]}"
                if body["has_more"] else ""
            )
    expected = [
        p.id for _, p in world.participations
        if p.account_id == account.account_id and not p.live_mode
    ]
    assert expected and sorted(listed) == sorted(expected)


@pytest.mark.slow
def test_a_contract_run_leaves_no_hypothesis_folder_in_the_working_directory(
    tmp_path: Path,
) -> None:
    """Hypothesis keeps its files under the current directory unless told otherwise: a user
    running `vpp-sandbox test` in their project gets none of them (unless --hypothesis-dir)."""
    work, kept = tmp_path / "project", tmp_path / "kept"
    work.mkdir()
    with served("--db", ":memory:", cwd=tmp_path) as running:
        env = {**os.environ, "VPP_TEST_ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
               "VPP_TEST_API_KEY": DEFAULT_TEST_KEY}
        for extra in ([], ["--hypothesis-dir", str(kept)]):
            done = subprocess.run(
                [sys.executable, "-m", "vpp_sandbox", "test", "--base-url", running.base_url,
                 "--profile", "quick", "--max-examples", "2", "--seed", "3", *extra],
                capture_output=True, text=True, timeout=300, cwd=work, env=env,
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list(work.iterdir()) == []
    assert (kept / "constants").is_dir()  # asked for: kept where it was asked

"""pytest fixtures for an integrator's tests: sandboxes, a fresh account per test, faults, coverage.

Registered through the `pytest11` entry point, so pytest loads it whenever `vpp-sandbox` is
installed: this module imports nothing but pytest and the standard library, and the clients
(`vpp_sandbox.account`, requests, httpx) are imported when a fixture is first used.

- `vpp_sandbox`: the sandbox of the test: one per session (per pytest-xdist worker, or one for
  all workers with `--vpp-shared`) started as `vpp-sandbox serve` on a free port with a
  throw-away store, another for each set of server options a module asks for
  (`@pytest.mark.vpp_sandbox_args(...)` or a `vpp_sandbox_args` fixture, seen only by the tests
  under it); or a running one given by `--vpp-base-url` / `VPP_SANDBOX_URL`.
- `vpp_account`: a new account for one test, deleted with all its data afterwards, with a loud
  client (`SandboxCallError` on an error answer; `@pytest.mark.vpp_quiet` to assert on errors),
  `@pytest.mark.vpp_fault(...)` rules and helpers; `vpp_second_account`, `vpp_account_factory`.
- On a failing test, the report gets the account's recent requests from the sandbox's journal
  and where the server log is; at the end, the integration coverage of the session's tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from vpp_sandbox.account import SandboxAccount
    from vpp_sandbox.client import SandboxServer
    from vpp_sandbox.integration import Coverage
    from vpp_sandbox.launch import Launcher


# Public names of the clients, importable from here as before (PEP 562: imported on first use).
_LAZY = {
    "SCENARIO_KINDS": "vpp_sandbox.account",
    "SandboxAccount": "vpp_sandbox.account",
    "SandboxCallError": "vpp_sandbox.client",
    "SandboxServer": "vpp_sandbox.client",
    "SandboxSession": "vpp_sandbox.client",
}
REPORT_REQUESTS = 15  # the journal's last requests shown in a failing test's report
COVERAGE_PAGES = 10  # at most 1,000 participations read per namespace for the coverage


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Session:
    """The plugin's state in one pytest process: its sandboxes, accounts by test, coverage."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.launcher: Launcher | None = None
        self.coverage: Coverage | None = None
        self.shared_dir: str | None = None

    def launch(self, folder: Path) -> Launcher:
        if self.launcher is None:
            from vpp_sandbox.launch import Launcher

            self.launcher = Launcher(folder)
        return self.launcher

    def covered(self) -> Coverage:
        if self.coverage is None:
            from vpp_sandbox.integration import Coverage

            self.coverage = Coverage()
        return self.coverage


_SESSION = pytest.StashKey[_Session]()
_ACCOUNTS = pytest.StashKey[list["SandboxAccount"]]()
_SERVER = pytest.StashKey["SandboxServer"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vpp-sandbox", "VPP Sandbox (fixtures vpp_sandbox, vpp_account)")
    group.addoption(
        "--vpp-base-url",
        default=os.environ.get("VPP_SANDBOX_URL"),
        metavar="URL",
        help="use the sandbox running at URL instead of starting one (env VPP_SANDBOX_URL)",
    )
    group.addoption(
        "--vpp-admin-key",
        default=os.environ.get("VPP_SANDBOX_ADMIN_KEY"),
        metavar="KEY",
        help="the admin key of the sandbox at --vpp-base-url, if it has one "
        "(env VPP_SANDBOX_ADMIN_KEY)",
    )
    group.addoption(
        "--vpp-mode",
        choices=("test", "live"),
        default=os.environ.get("VPP_SANDBOX_MODE", "test"),
        help="mode of vpp_account.client: test (sk_test_ key) or live (env VPP_SANDBOX_MODE)",
    )
    group.addoption(
        "--vpp-shared",
        action="store_true",
        help="one sandbox for all pytest-xdist workers instead of one each",
    )
    group.addoption(
        "--vpp-coverage-json",
        metavar="FILE",
        help="write the integration coverage of the session's tests to FILE as JSON",
    )
    group.addoption(
        "--vpp-min-coverage",
        type=float,
        metavar="PERCENT",
        help="fail the session when the integration coverage is below PERCENT",
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "vpp_fault(operation, status=None, *, times=1, retry_after=None, latency_ms=None, "
        "drop=False): a fault rule for the test's account (vpp_account.add_fault)",
        "vpp_quiet: vpp_account.client answers errors instead of raising SandboxCallError",
        "vpp_sandbox_args(*args): vpp-sandbox serve options for the sandbox of these tests",
    ):
        config.addinivalue_line("markers", line)
    session = _Session(config)
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        session.shared_dir = worker.get("vpp_shared_dir")
    elif config.getoption("--vpp-shared"):
        session.shared_dir = tempfile.mkdtemp(prefix="vpp-sandbox-shared-")
    config.stash[_SESSION] = session


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker learns where the shared sandbox's address is kept."""
    shared = node.config.stash[_SESSION].shared_dir
    if shared is not None:
        node.workerinput["vpp_shared_dir"] = shared


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def vpp_sandbox_args(request: pytest.FixtureRequest) -> list[str]:
    """`vpp-sandbox serve` options for this test's sandbox: `@pytest.mark.vpp_sandbox_args`'s,
    else none. Override it in a folder's `conftest.py`: only the tests under it see it."""
    marker = request.node.get_closest_marker("vpp_sandbox_args")
    return [str(a) for a in marker.args] if marker is not None else []


@pytest.fixture
def vpp_sandbox(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    vpp_sandbox_args: list[str],
) -> SandboxServer:
    """The sandbox of this test: started once per set of options (and per xdist worker, unless
    `--vpp-shared`), or the running one of `--vpp-base-url`."""
    from vpp_sandbox.client import SandboxServer

    config = request.config
    session = config.stash[_SESSION]
    base_url = config.getoption("--vpp-base-url")
    if base_url:
        if vpp_sandbox_args:
            pytest.skip(
                f"needs a sandbox started with {' '.join(vpp_sandbox_args)}; --vpp-base-url "
                "gives a running one"
            )
        admin_key = config.getoption("--vpp-admin-key") or None
        server = SandboxServer(str(base_url).rstrip("/"), admin_key)
    else:
        launcher = session.launch(tmp_path_factory.mktemp("vpp-sandbox"))
        if session.shared_dir is not None and not vpp_sandbox_args:
            server = launcher.shared(Path(session.shared_dir))
        else:
            server = launcher.get(vpp_sandbox_args)
    request.node.stash[_SERVER] = server
    return server


@pytest.fixture
def vpp_live_mode(request: pytest.FixtureRequest) -> bool:
    """Whether `vpp_account.client` uses the live key (`--vpp-mode live`)."""
    return bool(request.config.getoption("--vpp-mode") == "live")


@pytest.fixture
def vpp_account_factory(
    request: pytest.FixtureRequest, vpp_sandbox: SandboxServer
) -> Iterator[Callable[..., SandboxAccount]]:
    """Makes accounts for this test (`vpp_account_factory(live_mode=False)`), each deleted
    with all its data when the test ends."""
    from vpp_sandbox.account import SandboxAccount

    made: list[SandboxAccount] = request.node.stash.setdefault(_ACCOUNTS, [])
    session = request.config.stash[_SESSION]
    quiet = request.node.get_closest_marker("vpp_quiet") is not None

    def make(live_mode: bool = False) -> SandboxAccount:
        created = vpp_sandbox.create_account()
        account = SandboxAccount(
            base_url=vpp_sandbox.base_url,
            account_id=created["account_id"],
            test_key=created["test_key"],
            live_key=created["live_key"],
            live_mode=live_mode,
            raise_on_error=not quiet,
        )
        made.append(account)
        return account

    yield make
    for account in made:
        try:
            _read_coverage(session.covered(), account)
        finally:
            account.close()
            token = None if vpp_sandbox.admin_key else account.login()
            vpp_sandbox.delete_account(account.account_id, token)


@pytest.fixture
def vpp_account(
    request: pytest.FixtureRequest,
    vpp_account_factory: Callable[..., SandboxAccount],
    vpp_live_mode: bool,
) -> SandboxAccount:
    """A new account for this test, deleted with everything in it when the test ends; the
    test's `@pytest.mark.vpp_fault(...)` rules are in place before it starts."""
    account = vpp_account_factory(vpp_live_mode)
    for marker in reversed(list(request.node.iter_markers("vpp_fault"))):
        account.add_fault(_fault_rule(marker))
    return account


@pytest.fixture
def vpp_second_account(vpp_account_factory: Callable[..., SandboxAccount]) -> SandboxAccount:
    """Another fresh account on the same sandbox (isolation tests), deleted afterwards."""
    return vpp_account_factory()


def _fault_rule(marker: pytest.Mark) -> dict[str, Any]:
    """`vpp_fault("createVppParticipation", 429, times=2)` as the control API's rule."""
    if len(marker.args) not in (1, 2):
        raise pytest.UsageError(
            "vpp_fault takes an operationId (or '*') and an optional status, e.g. "
            "@pytest.mark.vpp_fault('createVppParticipation', 429, times=2)"
        )
    rule: dict[str, Any] = {"operation": marker.args[0], **marker.kwargs}
    if len(marker.args) == 2:
        rule["status"] = marker.args[1]
    return rule


# -- what the sandbox saw: a failing test's report, and the coverage ------------------------


def _read_coverage(coverage: Coverage, account: SandboxAccount) -> None:
    """Count what the account's namespaces met, before it is deleted."""
    for live in account.used_modes:
        client = account.control(live)
        journal = client.get("/_sandbox/requests", params={"limit": 100}).json()
        coverage.add_answers(
            (
                (item["path"], int(item["status"]), (item.get("error") or {}).get("code"))
                for item in journal["data"]
            ),
            full=len(journal["data"]) >= journal["capacity"] > 0,
        )
        since = account.world_loaded_at.get(live)
        params: dict[str, Any] = {"limit": 100}
        for _ in range(COVERAGE_PAGES):
            page = client.get("/vpp-participations", params=params).json()
            for body in page["data"]:
                coverage.add_participation(body, since)
            if not page["has_more"] or not page["data"]:
                break
            params["starting_after"] = page["data"][-1]["id"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    accounts = item.stash.get(_ACCOUNTS, None)
    if report.failed and report.when in ("setup", "call") and accounts:
        server = item.stash.get(_SERVER, None)
        report.sections.append(("vpp-sandbox: what the sandbox saw", _seen(accounts, server)))
    return report


def _seen(accounts: list[SandboxAccount], server: SandboxServer | None) -> str:
    """Each account's last requests from the journal, and where the server's log is."""
    lines = []
    if server is not None:
        where = server.log or "kept by the sandbox's own process (--vpp-base-url)"
        lines.append(f"sandbox {server.base_url}; server log: {where}")
    for account in accounts:
        for live in account.used_modes:
            mode = "live" if live else "test"
            lines.append(f"account {account.account_id} ({mode} mode), last requests:")
            try:
                found = account.requests(live=live)[-REPORT_REQUESTS:]
            except Exception as exc:  # the sandbox itself may be what failed
                lines.append(f"  (the journal could not be read: {exc})")
                continue
            lines.extend(f"  {r.line()}" for r in found)
            if not found:
                lines.append("  (none)")
    return "\n".join(lines)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash[_SESSION]
    if state.launcher is not None:
        state.launcher.close()
    worker = getattr(config, "workeroutput", None)
    if worker is not None:
        if state.coverage is not None:
            worker["vpp_coverage"] = state.coverage.to_json()
        return
    if state.shared_dir is not None:
        from vpp_sandbox.launch import stop_shared

        stop_shared(Path(state.shared_dir))
        shutil.rmtree(state.shared_dir, ignore_errors=True)
    coverage = state.coverage
    if coverage is None:
        return
    path = config.getoption("--vpp-coverage-json")
    if path:
        Path(path).write_text(coverage.dumps() + "\n")
    threshold = config.getoption("--vpp-min-coverage")
    if threshold is not None and coverage.to_json()["percent"] < threshold:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: a worker's coverage joins the controller's."""
    data = getattr(node, "workeroutput", {}).get("vpp_coverage")
    if data is not None:
        from vpp_sandbox.integration import Coverage

        node.config.stash[_SESSION].covered().merge(Coverage.from_json(data))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash[_SESSION]
    if state.coverage is None or getattr(config, "workerinput", None) is not None:
        return
    terminalreporter.section("vpp-sandbox integration coverage")
    for line in state.coverage.render():
        terminalreporter.write_line(line)
    threshold = config.getoption("--vpp-min-coverage")
    if threshold is not None:
        percent = state.coverage.to_json()["percent"]
        verdict = "FAILED" if percent < threshold else "passed"
        terminalreporter.write_line(
            f"  --vpp-min-coverage {threshold:g}: {verdict} ({percent}% measured)"
        )

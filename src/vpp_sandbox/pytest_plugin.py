"""pytest fixtures for an integrator's tests: a sandbox per session and a fresh account per test.

Registered through the `pytest11` entry point, so pytest loads it whenever `vpp-sandbox` is
installed, and only pytest imports it. The fixtures follow pytest-httpserver and
pytest-postgresql: a session-scoped server and a function-scoped handle on it.

- `vpp_sandbox`: the sandbox, started once per session (once per pytest-xdist worker) as a
  `vpp-sandbox serve` process on a free port with a throw-away store in a temporary folder; or a
  running one given by `--vpp-base-url` / `VPP_SANDBOX_URL` (its admin key, if it has one, by
  `--vpp-admin-key` / `VPP_SANDBOX_ADMIN_KEY`).
- `vpp_account`: a new account for one test (`POST /_sandbox/accounts`), deleted with all its
  data afterwards: its credentials, a logged-in `requests.Session` and helpers for the clock,
  the autopilot, worlds and scenario devices. Tests never see each other's data, in parallel too.
- `vpp_live_mode`: the mode of `vpp_account.client` (`--vpp-mode test|live`, default test);
  override it per test with `@pytest.mark.parametrize("vpp_live_mode", [True])`.
- `vpp_sandbox_args`: extra `vpp-sandbox serve` arguments for the server the plugin starts
  (e.g. `["--rate-limit", "5"]`); override it in a `conftest.py`.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from vpp_sandbox.mock_server.scenarios import SCENARIO_DEVICES

__all__ = [
    "SCENARIO_KINDS",
    "SandboxAccount",
    "SandboxCallError",
    "SandboxServer",
    "SandboxSession",
]

# The scenario devices of the README, by scenario: enrol one and the sandbox plays its path.
SCENARIO_KINDS: dict[str, str] = {d.scenario: d.device_id for d in SCENARIO_DEVICES.values()}
# Any well-formed ids are accepted; these give the enrolments of `enrol_scenario` stable names.
DEFAULT_PROVIDER_ID = "prv_8587fa49c7e5297ccc6c57e5"
DEFAULT_PROGRAMME_ID = "vpr_6a1f8e375db9de605baadd46"
_TIMEOUT = 30.0
_START_TIMEOUT = 60.0


class SandboxCallError(Exception):
    """A helper's call to the sandbox was refused; the message has the sandbox's error."""

    def __init__(
        self, method: str, path: str, response: requests.Response, hint: str = ""
    ) -> None:
        self.status_code = response.status_code
        self.body = response.text
        super().__init__(
            f"{method} {path} answered {response.status_code}: {response.text}{hint}"
        )


class SandboxSession(requests.Session):
    """A `requests.Session` that sends paths (`/vpp-participations`) to the sandbox's base URL."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        super().__init__()
        self.base_url = base_url
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", _TIMEOUT)
        return super().request(method, url, *args, **kwargs)


def _checked(method: str, path: str, response: requests.Response, hint: str = "") -> Any:
    if not response.ok:
        raise SandboxCallError(method, path, response, hint)
    return response.json()


@dataclass
class SandboxServer:
    """A running sandbox: where it is, and how to make and delete accounts on it."""

    base_url: str
    admin_key: str | None = None

    def _admin(self) -> dict[str, str]:
        return {} if self.admin_key is None else {"Authorization": f"Bearer {self.admin_key}"}

    def create_account(self) -> dict[str, str]:
        """A new account: `account_id`, `test_key`, `live_key` (`POST /_sandbox/accounts`)."""
        path = "/_sandbox/accounts"
        r = requests.post(self.base_url + path, headers=self._admin(), timeout=_TIMEOUT)
        hint = ""
        if r.status_code in (401, 403) and self.admin_key is None:
            hint = (
                "\nThis sandbox has an admin key: give it with --vpp-admin-key or "
                "VPP_SANDBOX_ADMIN_KEY."
            )
        created: dict[str, str] = _checked("POST", path, r, hint)
        return created

    def delete_account(self, account_id: str, token: str | None = None) -> dict[str, Any]:
        """Delete an account and its data, with the admin key if known, else its own token."""
        path = f"/_sandbox/accounts/{account_id}"
        headers = self._admin() or {"Authorization": f"Bearer {token}"}
        r = requests.delete(self.base_url + path, headers=headers, timeout=_TIMEOUT)
        deleted: dict[str, Any] = _checked("DELETE", path, r)
        return deleted


@dataclass
class SandboxAccount:
    """A fresh account for one test: credentials, a logged-in client and sandbox helpers.

    `client` is a `requests.Session` with a bearer token of the account's test mode (live mode
    with `vpp_live_mode`); give it paths: `vpp_account.client.get("/vpp-participations")`.
    The clock, autopilot, world and scenario helpers act on that mode's namespace.
    """

    base_url: str
    account_id: str
    test_key: str
    live_key: str
    live_mode: bool = False
    _sessions: list[SandboxSession] = field(default_factory=list, repr=False)
    _client: SandboxSession | None = field(default=None, repr=False)

    @property
    def api_key(self) -> str:
        """The key of the client's mode."""
        return self.live_key if self.live_mode else self.test_key

    @property
    def client(self) -> SandboxSession:
        """The logged-in HTTP client of the account's mode (made on first use)."""
        if self._client is None:
            self._client = self.session(self.live_mode)
        return self._client

    def login(self, live: bool = False) -> str:
        """A bearer token of the test (or live) mode, from `GET /login` with its key."""
        key = self.live_key if live else self.test_key
        r = requests.get(
            self.base_url + "/login", auth=(self.account_id, key), timeout=_TIMEOUT
        )
        token: str = _checked("GET", "/login", r)["bearer_token"]
        return token

    def session(self, live: bool = False) -> SandboxSession:
        """Another logged-in client, of either mode; closed when the test ends."""
        made = SandboxSession(self.base_url, self.login(live))
        self._sessions.append(made)
        return made

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return _checked(method, path, self.client.request(method, path, json=body))

    # -- sandbox time ---------------------------------------------------------------------

    def clock(self) -> dict[str, Any]:
        """The namespace's clock: `now`, `frozen`, `autopilot` (`GET /_sandbox/clock`)."""
        clock: dict[str, Any] = self._call("GET", "/_sandbox/clock")
        return clock

    def advance(self, duration: str | int | timedelta) -> dict[str, Any]:
        """Move the clock forward (`"P7D"`, `"PT36H"`, seconds or a timedelta); due steps happen."""
        if isinstance(duration, timedelta):
            duration = int(duration.total_seconds())
        return self._update_clock({"advance": duration})

    def freeze(self) -> dict[str, Any]:
        """Stop the clock at the current second."""
        return self._update_clock({"freeze": True})

    def unfreeze(self) -> dict[str, Any]:
        """Let the clock run on from where it stands."""
        return self._update_clock({"freeze": False})

    def set_autopilot(self, on: bool) -> dict[str, Any]:
        """Switch the autopilot (participations moving on their own) off or on again."""
        return self._update_clock({"autopilot": on})

    def _update_clock(self, body: dict[str, Any]) -> dict[str, Any]:
        clock: dict[str, Any] = self._call("POST", "/_sandbox/clock", body)
        return clock

    # -- data -----------------------------------------------------------------------------

    def load_world(
        self, name: str = "demo", seed: int = 0, size: int | None = None
    ) -> dict[str, Any]:
        """Replace the namespace's participations with a seeded world's (`POST /_sandbox/world`)."""
        body: dict[str, Any] = {"world": name, "seed": seed}
        if size is not None:
            body["size"] = size
        loaded: dict[str, Any] = self._call("POST", "/_sandbox/world", body)
        return loaded

    def enrol_scenario(
        self,
        kind: str,
        *,
        provider_id: str = DEFAULT_PROVIDER_ID,
        programme_id: str = DEFAULT_PROGRAMME_ID,
    ) -> dict[str, Any]:
        """Enrol the scenario device of `kind` (see `SCENARIO_KINDS`); the new participation."""
        if kind not in SCENARIO_KINDS:
            raise ValueError(f"unknown scenario {kind!r}: one of {', '.join(SCENARIO_KINDS)}")
        body = {
            "device_id": SCENARIO_KINDS[kind],
            "provider_id": provider_id,
            "programme_id": programme_id,
        }
        created: dict[str, Any] = self._call("POST", "/vpp-participations", body)
        return created

    def close(self) -> None:
        for made in self._sessions:
            made.close()
        self._sessions.clear()
        self._client = None


# -- starting a sandbox ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], log: Path) -> str | None:
    """None once the server answers; else why it did not start (its output)."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return log.read_text(errors="replace")[-3000:]
        try:
            requests.get(base_url + "/_sandbox/openapi.json", timeout=2).close()
            return None
        except requests.ConnectionError:
            time.sleep(0.05)
    return f"no answer in {_START_TIMEOUT:.0f} s: " + log.read_text(errors="replace")[-3000:]


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class _Started:
    server: SandboxServer
    process: subprocess.Popen[bytes]


def _start(folder: Path, extra_args: Sequence[str]) -> _Started:
    """`vpp-sandbox serve` on a free port with a store in `folder`, once it answers."""
    # A fresh admin key of its own: nothing else on the machine makes or deletes accounts on
    # it, and a VPP_ADMIN_KEY of the caller's environment cannot get in the way.
    admin_key = secrets.token_hex(16)
    env = {**os.environ, "VPP_ADMIN_KEY": admin_key}
    failures = []
    for attempt in range(3):  # a free port may be taken before the server binds it
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}"
        log = folder / f"serve-{attempt}.log"
        command = [
            sys.executable, "-m", "vpp_sandbox", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--db", str(folder / "sandbox.db"), *extra_args,
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        why = _wait_until_up(base_url, process, log)
        if why is None:
            return _Started(SandboxServer(base_url, admin_key), process)
        _stop(process)
        failures.append(why)
        if "address already in use" not in why.lower():
            break
    raise RuntimeError(
        f"vpp-sandbox serve did not start ({' '.join(command)}):\n{failures[-1]}"
    )


# -- pytest hooks and fixtures --------------------------------------------------------------


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


@pytest.fixture(scope="session")
def vpp_sandbox_args() -> list[str]:
    """Extra `vpp-sandbox serve` arguments for the sandbox the plugin starts; override it."""
    return []


@pytest.fixture(scope="session")
def vpp_sandbox(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    vpp_sandbox_args: list[str],
) -> Iterator[SandboxServer]:
    """The sandbox of this session (of this xdist worker): started here, or the one given."""
    base_url = request.config.getoption("--vpp-base-url")
    if base_url:
        admin_key = request.config.getoption("--vpp-admin-key") or None
        yield SandboxServer(str(base_url).rstrip("/"), admin_key)
        return
    started = _start(tmp_path_factory.mktemp("vpp-sandbox"), vpp_sandbox_args)
    try:
        yield started.server
    finally:
        _stop(started.process)


@pytest.fixture
def vpp_live_mode(request: pytest.FixtureRequest) -> bool:
    """Whether `vpp_account.client` uses the live key (`--vpp-mode live`)."""
    return bool(request.config.getoption("--vpp-mode") == "live")


@pytest.fixture
def vpp_account(vpp_sandbox: SandboxServer, vpp_live_mode: bool) -> Iterator[SandboxAccount]:
    """A new account for this test, deleted with everything in it when the test ends."""
    created = vpp_sandbox.create_account()
    account = SandboxAccount(
        base_url=vpp_sandbox.base_url,
        account_id=created["account_id"],
        test_key=created["test_key"],
        live_key=created["live_key"],
        live_mode=vpp_live_mode,
    )
    try:
        yield account
    finally:
        account.close()
        token = None if vpp_sandbox.admin_key else account.login()
        vpp_sandbox.delete_account(account.account_id, token)

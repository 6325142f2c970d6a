"""The distribution as a new user gets it, outside the clone: a packaging mistake fails here.

Builds the sdist and, from it, the wheel; installs the wheel (with constraints.txt) into a fresh
venv in a temporary folder; and there, with nothing of the clone importable, checks that the
package data matches the repository, runs `vpp-sandbox serve` (free port, temporary database)
with `vpp-sandbox test --profile quick` against it, and runs the examples/integrator-project
tests, with the README's quick-start test beside them, with `-n 2` on the installed plugin (which
starts a sandbox per worker), first without extras as an integrator installs it, then with the
contract and worlds extras. Prints the time of every step. Exit code 0 only if all of it
passes.

    .venv/bin/python .ci/wheel_check.py        # make wheel-check (part of make test)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
EXAMPLE = ROOT / "examples" / "integrator-project"
DEFAULT_ACCOUNT = "acc_661677911f2197045e6cf1b1"
TEST_KEY = "sk_test_vppsandbox4f3c9a2b7d1e8f60"
LIVE_KEY = "sk_live_vppsandbox4f3c9a2b7d1e8f60"
# Package data, by repository folder and installed package: every such file must be installed.
PACKAGE_DATA = {
    "openapi": ("vpp_sandbox.openapi", "*.yaml"),
    "fixtures/worlds": ("vpp_sandbox.fixtures", "*.json"),
}

timings: list[tuple[str, float]] = []


class Failed(Exception):
    """A step failed; the message says which and shows its output."""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the clone's settings: no VPP_*, no PYTHONPATH."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VPP_", "PYTEST_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    return {**keep, **extra}


def run(label: str, command: Sequence[str | Path], cwd: Path, **extra_env: str) -> str:
    """Run a step to completion; its output, or Failed with the output."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=clean_env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    timings.append((label, elapsed))
    print(f"  {elapsed:6.1f} s  {label}", flush=True)
    if done.returncode != 0:
        raise Failed(f"{label}: exit code {done.returncode}\n{done.stdout[-6000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(venv: Path, work: Path) -> Iterator[str]:
    """The installed `vpp-sandbox serve` on a free port with a temporary database."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = work / f"serve-{port}.log"
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [venv / "bin" / "vpp-sandbox", "serve", "--port", str(port),
             "--db", work / f"serve-{port}.db"],
            cwd=work,
            env=clean_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base_url + "/_sandbox/openapi.json", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    output = log_path.read_text(errors="replace")[-4000:]
                    raise Failed(f"vpp-sandbox serve did not start:\n{output}") from None
                time.sleep(0.1)
        elapsed = time.perf_counter() - started
        timings.append(("vpp-sandbox serve: up", elapsed))
        print(f"  {elapsed:6.1f} s  vpp-sandbox serve: up at {base_url}", flush=True)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def copy_source(target: Path) -> Path:
    """The files a fresh clone has (tracked, or new and not ignored), symlinks as symlinks.

    Building from the working tree itself would let a stale `*.egg-info/SOURCES.txt` from an
    earlier build or `pip install -e` put files into the sdist that the configuration forgot.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        origin, copy = ROOT / name, target / name
        if not origin.exists() and not origin.is_symlink():
            continue  # deleted in the working tree, not yet in git
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, copy, follow_symlinks=False)
    return target


def readme_quick_start() -> str:
    """The Python block the README tells a new user to save as `test_onboarding.py`."""
    text = (ROOT / "README.md").read_text()
    marker = "Save this as `test_onboarding.py`:"
    if marker not in text:
        raise Failed(f"README.md has no {marker!r}: keep this check and the README together")
    block = text.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    if "def test_" not in block:
        raise Failed(f"the README's block after {marker!r} holds no test function")
    return block


def check_package_data(python: Path, work: Path) -> None:
    """Every spec and committed world of the repository is installed, byte for byte."""
    expected = {
        f"{package}/{path.name}": path.read_bytes().hex()
        for folder, (package, pattern) in PACKAGE_DATA.items()
        for path in sorted((ROOT / folder).glob(pattern))
    }
    probe = (
        "import json, sys\n"
        "from importlib.resources import files\n"
        "wanted = json.load(sys.stdin)\n"
        "bad = []\n"
        "for key, data in wanted.items():\n"
        "    package, _, rest = key.partition('/')\n"
        "    name = rest if package.endswith('openapi') else 'worlds/' + rest\n"
        "    item = files(package).joinpath(name)\n"
        "    if not item.is_file() or item.read_bytes().hex() != data:\n"
        "        bad.append(key)\n"
        "print(json.dumps(bad))\n"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [str(python), "-c", probe],
        input=json.dumps(expected),
        cwd=work,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    timings.append(("package data", time.perf_counter() - started))
    if done.returncode != 0 or json.loads(done.stdout or '["?"]'):
        raise Failed(
            f"package data missing or different in the installed wheel: {done.stdout}"
            f"{done.stderr[-3000:]}"
        )
    print(f"  {timings[-1][1]:6.1f} s  package data: {len(expected)} files as in the repository")


def check_contract_extra_is_named(venv: Path, work: Path) -> None:
    """Without the contract extra, `vpp-sandbox test` says what to install (exit code 2)."""
    done = subprocess.run(
        [str(venv / "bin" / "vpp-sandbox"), "test", "--base-url", "http://127.0.0.1:9",
         "--account-id", DEFAULT_ACCOUNT, "--api-key", TEST_KEY],
        cwd=work, env=clean_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 2 or "pip install 'vpp-sandbox[contract]'" not in done.stderr:
        raise Failed(f"vpp-sandbox test without the contract extra: {done.returncode}\n"
                     f"{done.stdout}{done.stderr}")  # fmt: skip
    print("         vpp-sandbox test without the contract extra names it")


def main() -> int:
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    work = Path(tempfile.mkdtemp(prefix="vpp-wheel-check-"))
    if work.is_relative_to(ROOT):  # pragma: no cover - TMPDIR inside the clone
        print(f"wheel-check: {work} is inside the clone; set TMPDIR elsewhere", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"wheel-check in {work}", flush=True)
    try:
        dist = work / "dist"
        source = copy_source(work / "source")
        # The sdist, then the wheel built from it: both routes of `pip install` are covered.
        run("build sdist and wheel", [sys.executable, "-m", "build", "--outdir", dist, source],
            work)  # fmt: skip
        wheels = sorted(dist.glob("vpp_sandbox-*.whl"))
        if len(wheels) != 1:
            raise Failed(f"expected one wheel in {dist}, found {wheels}")
        venv = work / "venv"
        python = venv / "bin" / "python"
        # Without a pip of its own (ensurepip costs seconds): this pip installs into it.
        run("fresh venv", [base_python, "-m", "venv", "--without-pip", venv], work)
        pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
        # First as an integrator installs it, without extras: the plugin and the example's
        # tests need nothing more, and the contract suite says what to install.
        run("install the wheel", [*pip, "-c", CONSTRAINTS, wheels[0]], work)
        run(
            "install the example's test group",
            [*pip, "-c", CONSTRAINTS, "--group", f"{EXAMPLE / 'pyproject.toml'}:test"],
            work,
        )
        example = work / "integrator-project"
        shutil.copytree(EXAMPLE, example)
        # The README's quick-start test runs beside the example's: the README cannot rot.
        (example / "tests" / "test_readme_quick_start.py").write_text(readme_quick_start())
        run("example and README tests -n 2 on the installed plugin",
            [python, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider"], example)
        check_contract_extra_is_named(venv, work)
        run("install the contract and worlds extras",
            [*pip, "-c", CONSTRAINTS, f"{wheels[0]}[contract,worlds]"], work)  # fmt: skip
        check_package_data(python, work)
        run("vpp-sandbox fixtures", [venv / "bin" / "vpp-sandbox", "fixtures", "--world",
                                     "edge-cases", "--out", work / "edge.json"], work)  # fmt: skip
        run("python -m vpp_sandbox --help", [python, "-m", "vpp_sandbox", "--help"], work)
        with serving(venv, work) as base_url:
            run(
                "vpp-sandbox test --profile quick",
                [venv / "bin" / "vpp-sandbox", "test", "--base-url", base_url,
                 "--account-id", DEFAULT_ACCOUNT, "--api-key", TEST_KEY,
                 "--second-account-id", DEFAULT_ACCOUNT, "--second-api-key", LIVE_KEY,
                 # A packaging check, not a fuzzing campaign: one fixed seed, so a run on
                 # the same code gives the same cases (the fuzzing runs in tests/).
                 "--profile", "quick", "--seed", "20261129"],
                work,
            )  # fmt: skip
        # mock_server/compat.py builds on uvicorn's protocols: the newest uvicorn, h11 and
        # httptools within our ranges (not the pins) must keep every connection limit.
        run("upgrade to the newest uvicorn, h11 and httptools in range",
            [*pip, "--upgrade", "uvicorn>=0.30,<1", "h11<1", "httptools>=0.6.3,<1"], work)
        said = run("connection limits on them (.ci/compat_check.py)",
                   [python, ROOT / ".ci" / "compat_check.py"], work)  # fmt: skip
        print("".join(f"           {line}\n" for line in said.strip().splitlines()), end="")
    except Failed as failure:
        print(f"wheel-check FAILED: {failure}", file=sys.stderr)
        print(f"(kept for inspection: {work})", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print(f"wheel-check passed in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

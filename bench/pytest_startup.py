"""What installing vpp-sandbox costs an integrator's pytest start-up: `--collect-only` of a
trivial project in a venv with pytest alone, and in one with pytest and the vpp-sandbox wheel.

Both venvs are made in a temporary folder (the wheel built from this clone, its requirements
from constraints.txt); the two are timed alternately, several times, and the medians printed.

    .venv/bin/python bench/pytest_startup.py [--runs 15] [--extras contract,worlds]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"


def venv(where: Path, *packages: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", where], check=True)
    python = where / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "-c", CONSTRAINTS,
         *packages],
        check=True,
    )  # fmt: skip
    return python


def collect(python: Path, project: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--extras", default="", help="extras of the wheel, e.g. contract,worlds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vpp-startup-"))
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", work / "dist", ROOT],
        check=True,
        capture_output=True,
    )
    wheel = next((work / "dist").glob("vpp_sandbox-*.whl"))
    target = f"{wheel}[{args.extras}]" if args.extras else str(wheel)
    project = work / "project"
    project.mkdir()
    (project / "test_trivial.py").write_text("def test_trivial():\n    assert True\n")
    pytest_only = venv(work / "pytest-only", "pytest")
    with_toolkit = venv(work / "with-toolkit", "pytest", target)
    for python in (pytest_only, with_toolkit):  # warm the file cache and the .pyc files
        collect(python, project)
    alone, installed = [], []
    for _ in range(args.runs):
        alone.append(collect(pytest_only, project))
        installed.append(collect(with_toolkit, project))
    a, b = statistics.median(alone), statistics.median(installed)
    label = f"vpp-sandbox[{args.extras}]" if args.extras else "vpp-sandbox"
    print(f"pytest --collect-only of a one-test project, median of {args.runs} alternating runs:")
    print(f"  pytest alone:        {a:.2f} s")
    print(f"  pytest + {label}: {b:.2f} s  (+{b - a:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The dependency rule of docs/architecture.md, kept true by scanning imports."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = {"connexion", "starlette", "uvicorn", "httpx", "requests", "jwt", "sqlite3", "flask"}
IO_AND_CLOCK = {"os", "time", "socket", "asyncio", "threading", "random", "secrets"}


PACKAGE = "vpp_sandbox."
OURS = ("contract_tests", "fixtures", "mock_server", "openapi")


def _raw_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "vpp_sandbox":
            found |= {f"vpp_sandbox.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add("." * node.level + (node.module or ""))
    return found


def _imports(path: Path) -> set[str]:
    """Imported modules, ours named without the `vpp_sandbox.` prefix (`mock_server.store`)."""
    found = set()
    for name in _raw_imports(path):
        if name == "vpp_sandbox":
            found.add("vpp_sandbox")
        elif name.startswith(PACKAGE):
            found.add(name.removeprefix(PACKAGE))
        else:
            found.add(name)
    return found


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


# Where each package's files are: the repository's folders, `vpp_sandbox`'s own in src/.
FOLDERS = {"vpp_sandbox": ROOT / "src" / "vpp_sandbox"}


def _modules(package: str) -> list[Path]:
    return sorted(FOLDERS.get(package, ROOT / package).rglob("*.py"))


def test_lifecycle_is_pure() -> None:
    path = ROOT / "mock_server" / "lifecycle.py"
    imported = _top(_imports(path))
    assert not imported & (WEB | IO_AND_CLOCK | {"mock_server", "fixtures", "contract_tests"})
    assert "datetime.now" not in path.read_text() and "utcnow" not in path.read_text()


def test_scenarios_are_pure_domain_over_the_lifecycle() -> None:
    path = ROOT / "mock_server" / "scenarios.py"
    imported = _imports(path)
    assert not _top(imported) & (WEB | IO_AND_CLOCK | {"fixtures", "contract_tests"})
    assert {n for n in imported if n.startswith("mock_server")} <= {"mock_server.lifecycle"}
    assert "datetime.now" not in path.read_text() and "utcnow" not in path.read_text()


@pytest.mark.parametrize("path", _modules("mock_server"), ids=lambda p: p.name)
def test_only_the_world_loader_imports_fixtures(path: Path) -> None:
    if path.name == "worlds.py":
        return
    assert "fixtures" not in _top(_imports(path)), f"{path} imports fixtures"


@pytest.mark.parametrize("path", _modules("contract_tests"), ids=lambda p: p.name)
def test_contract_tests_never_import_the_mock(path: Path) -> None:
    assert "mock_server" not in _top(_imports(path)), f"{path} imports mock_server"


@pytest.mark.parametrize("path", _modules("fixtures"), ids=lambda p: p.name)
def test_fixtures_use_only_the_domain(path: Path) -> None:
    imported = _imports(path)
    web_side = {n for n in imported if n.startswith("mock_server.")} - {
        "mock_server.lifecycle",
        "mock_server.scenarios",
        "mock_server.settings",
    }
    assert not web_side, f"{path} imports the mock's web layer: {web_side}"
    assert not _top(imported) & WEB


@pytest.mark.parametrize("path", _modules("mock_server"), ids=lambda p: p.name)
def test_mock_never_imports_the_suites_or_the_cli(path: Path) -> None:
    imported = _imports(path)
    assert not _top(imported) & {"contract_tests", "vpp_sandbox"}


@pytest.mark.parametrize(
    "path",
    [p for package in (*OURS, "vpp_sandbox", "tests", "bench") for p in _modules(package)],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_everything_is_imported_under_the_one_package_name(path: Path) -> None:
    """An installed wheel has no top-level mock_server, fixtures, ...: only vpp_sandbox."""
    raw = _raw_imports(path)
    assert not {n.split(".")[0] for n in raw} & set(OURS), f"{path} imports a bare package name"
    assert not {n for n in raw if n.startswith(".")}, f"{path} uses a relative import"


def test_only_settings_reads_the_environment() -> None:
    for package in ("mock_server", "fixtures"):
        for path in _modules(package):
            if path.name == "settings.py":
                continue
            text = path.read_text()
            assert "os.environ" not in text and "getenv" not in text, f"{path} reads the env"


def test_the_pytest_plugin_keeps_the_web_stack_out_of_the_tests_process() -> None:
    """An integrator's pytest imports the plugin: no server framework, only the pure scenarios."""
    imported = _imports(FOLDERS["vpp_sandbox"] / "pytest_plugin.py")
    ours = {n for n in imported if n.split(".")[0] in OURS}
    assert ours <= {"mock_server.scenarios"}, ours
    assert not _top(imported) & {"connexion", "starlette", "uvicorn", "schemathesis"}


def test_the_example_project_uses_only_the_plugin_and_the_http_api() -> None:
    paths = sorted((ROOT / "examples").rglob("*.py"))
    assert paths
    for path in paths:
        imported = _top(_raw_imports(path))
        assert not imported & {"vpp_sandbox", *OURS}, f"{path} imports the toolkit"


@pytest.mark.parametrize("name", ["store.py", "store_sqlite.py", "store_postgres.py"])
def test_the_store_persists_and_leaves_policy_out(name: str) -> None:
    """The autopilot's rule and the scenarios are handed to the store, never imported by it."""
    imported = _imports(ROOT / "mock_server" / name)
    ours = {n for n in imported if n.startswith("mock_server.")}
    assert not ours & {"mock_server.scenarios", "mock_server.autopilot", "mock_server.handlers",
                       "mock_server.control", "mock_server.app"}, ours
    assert not _top(imported) & {"connexion", "starlette", "fixtures"}


def test_only_the_engines_talk_to_a_database() -> None:
    for path in _modules("mock_server"):
        if path.name in ("store_sqlite.py", "store_postgres.py"):
            continue
        assert not _top(_imports(path)) & {"sqlite3", "psycopg", "psycopg_pool"}, path


def test_the_repository_holds_no_link() -> None:
    """The package is mapped from real folders (setuptools package-dir), never linked together."""
    listed = subprocess.run(
        ["git", "ls-files", "--stage"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    links = [line.split("\t", 1)[1] for line in listed.splitlines() if line.startswith("120000")]
    assert not links, f"symbolic links in the repository: {links}"
    on_disk = [p for p in ROOT.rglob("*") if p.is_symlink() and not _ignored(p)]
    assert not on_disk, on_disk


def test_mypy_checks_every_bench_script() -> None:
    """The bench scripts import their siblings bare, so pyproject.toml names each one for mypy
    (`modules`, and the tests' relaxed override): a script added to bench/ is added to both."""
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    scripts = sorted(p.stem for p in (ROOT / "bench").glob("*.py"))
    assert sorted(mypy["modules"]) == scripts
    relaxed = next(o for o in mypy["overrides"] if "tests.*" in o["module"])
    assert sorted(set(relaxed["module"]) - {"tests.*"}) == scripts


def _ignored(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    # bench/.prism: the npm install of Prism that bench/vs_prism.py makes (git-ignored).
    return parts[0] in {".venv", "build", ".git", "dist"} or parts[0].startswith(".venv-") or (
        parts[:2] == ("bench", ".prism"))


def test_every_module_has_one_name() -> None:
    """Imported in one process, each file of ours is one module, under `vpp_sandbox.` (or
    `tests.` for the tests' helpers): never a second identity under a bare folder name."""
    code = (
        "import importlib, pkgutil, sys, warnings, json\n"
        "warnings.simplefilter('ignore')\n"
        "import vpp_sandbox\n"
        "for m in pkgutil.walk_packages(vpp_sandbox.__path__, 'vpp_sandbox.'):\n"
        "    importlib.import_module(m.name)\n"
        "import tests.serve_process, tests.stores\n"
        "files = [(n, getattr(m, '__file__', None)) for n, m in list(sys.modules.items())]\n"
        "print(json.dumps([(n, f) for n, f in files if f and '/site-packages/' not in f]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    seen: dict[str, str] = {}
    for name, file in json.loads(done.stdout):
        real = str(Path(file).resolve())
        if not real.startswith(str(ROOT)):
            continue  # the standard library's own aliases (os.path)
        assert real not in seen, f"{real} is imported as {seen[real]} and as {name}"
        seen[real] = name
        assert name.split(".")[0] in {"vpp_sandbox", "tests"}, f"{real} is imported as {name}"


FRAMEWORKS = ("connexion", "starlette", "uvicorn", "h11", "httptools")
_PRIVATE_USE = re.compile(
    r"\b(?:" + "|".join(FRAMEWORKS) + r")[A-Za-z0-9_.]*\._[A-Za-z]"
    r"|from (?:" + "|".join(FRAMEWORKS) + r")[A-Za-z0-9_.]* import [^\n]*\b_[A-Za-z]"
)


@pytest.mark.parametrize(
    "path",
    [p for package in (*OURS, "vpp_sandbox") for p in _modules(package)],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_frameworks_are_used_through_their_public_names_only(path: Path) -> None:
    """No underscore name of Connexion, Starlette, uvicorn, h11 or httptools is imported or
    read, and no attribute of theirs is assigned (a patch would change every app in the
    process, and break on an upgrade)."""
    text = path.read_text()
    assert not _PRIVATE_USE.findall(text), _PRIVATE_USE.findall(text)
    tree = ast.parse(text)
    imported = {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        and ((node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name)
        .split(".")[0] in FRAMEWORKS
        for alias in node.names
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                base = target
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(target, ast.Attribute) and isinstance(base, ast.Name):
                    assert base.id not in imported, f"{path}:{node.lineno} assigns to {base.id}"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and node.args
            and isinstance(node.args[0], ast.Name)
        ):
            assert node.args[0].id not in imported, f"{path}:{node.lineno} setattr"


def test_a_served_sandbox_changes_no_framework_function() -> None:
    """Every function and class attribute of the frameworks is the same object before and
    after an app is built and has answered requests of every kind."""
    code = '''
import sys, warnings, json
warnings.simplefilter("ignore")
import connexion, starlette, uvicorn
from vpp_sandbox.mock_server import app as app_module, compat, server

FRAMEWORKS = {frameworks!r}

def snapshot():
    seen = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in FRAMEWORKS:
            continue
        for attr, value in list(vars(module).items()):
            seen[f"{name}.{attr}"] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                for key, member in list(vars(value).items()):
                    seen[f"{name}.{attr}.{key}"] = id(member)
    return seen

from vpp_sandbox.mock_server.settings import Settings
settings = Settings(db=":memory:")
compat.check(settings.http)
compat.protocol_class(compat.Limits.of(settings))
before = snapshot()
app = app_module.create_app(settings)
with app.test_client() as client:
    account = settings.accounts[0]
    token = client.get("/login", auth=(account.account_id, account.api_key)).json()
    headers = {"Authorization": "Bearer " + token["bearer_token"]}
    body = {"device_id": "dev_" + "1" * 24, "provider_id": "prv_" + "2" * 24,
            "programme_id": "vpr_" + "3" * 24}
    made = client.post("/vpp-participations", json=body, headers=headers).json()
    client.get("/vpp-participations/" + made["id"], headers=headers)
    client.get("/vpp-participations?limit=5", headers=headers)
    client.post("/vpp-participations/" + made["id"], json={"participation_state": []},
                headers=headers)
    client.get("/nowhere"); client.delete("/vpp-participations")
    client.get("/ui/"); client.get("/openapi.json"); client.get("/_sandbox/clock", headers=headers)
after = snapshot()
changed = sorted(k for k in before if k in after and before[k] != after[k])
print(json.dumps(changed))
'''.replace("{frameworks!r}", repr(FRAMEWORKS))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_importing_the_store_loads_no_web_framework() -> None:
    """The store persists and nothing else: what it imports, transitively, has no framework."""
    code = (
        "import sys, json\n"
        "import vpp_sandbox.mock_server.store, vpp_sandbox.mock_server.store_sqlite\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & {*FRAMEWORKS, "jsonschema", "jsonschema_rs", "httpx", "flask"}, loaded

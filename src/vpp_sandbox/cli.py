"""`vpp-sandbox serve | test | proxy | fixtures`: argument parsing and dispatch, and the proxy's
composition with the sandbox's HTTP limits (`proxy_serving`: contract_tests imports no server
code, so the composition root hands them in).

Every setting is declared once, with its flag and its `VPP_` variable (`vpp_sandbox.options`):
the server's in `mock_server.settings.Settings`, the contract run's and the proxy's below (the
proxy's HTTP limits are the server's declarations under `VPP_PROXY_` variables).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from vpp_sandbox import options
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.options import Option, choice, positive_float, positive_int, setting, whole

__all__ = ["ContractOptions", "ProxyOptions", "build_parser", "main", "proxy_serving"]

# Connexion imports starlette's test client, which warns about httpx on every start; that is
# noise for someone running the command (and for each process of `serve --workers N`, which
# imports this module first).
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


def percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not 0 <= value <= 100:
        raise ValueError(f"{text!r} is not a percentage from 0 to 100")
    return value


@dataclass(frozen=True)
class ContractOptions:
    """`vpp-sandbox test`: the contract suites against an implementation."""

    base_url: str | None = setting(
        None,
        option=Option("--base-url", "VPP_TEST_BASE_URL", "the implementation's root URL, e.g. "
                      "http://127.0.0.1:8080", metavar="URL", required=True),
    )
    account_id: str | None = setting(
        None,
        option=Option("--account-id", "VPP_TEST_ACCOUNT_ID", "the account the suites log in "
                      "as", metavar="ID", required=True),
    )
    api_key: str | None = setting(
        None,
        option=Option("--api-key", "VPP_TEST_API_KEY", "its API key (the variable keeps it off "
                      "the command line)", metavar="KEY", required=True, secret=True),
    )
    second_account_id: str | None = setting(
        None,
        option=Option("--second-account-id", "VPP_TEST_SECOND_ACCOUNT_ID", "a second "
                      "namespace for the isolation rules", metavar="ID"),
    )
    second_api_key: str | None = setting(
        None,
        option=Option("--second-api-key", "VPP_TEST_SECOND_API_KEY", "its API key",
                      metavar="KEY", secret=True),
    )
    junit_xml: str | None = setting(
        None,
        option=Option("--junit-xml", "VPP_TEST_JUNIT_XML", "JUnit report: one test case per "
                      "rule per suite", metavar="FILE"),
    )
    html: str | None = setting(
        None,
        option=Option("--html", "VPP_TEST_HTML", "self-contained HTML report: failures, "
                      "coverage, graph", metavar="FILE"),
    )
    seed: int | None = setting(
        None, option=Option("--seed", "VPP_TEST_SEED", "Hypothesis seed of the run", whole)
    )
    max_examples: int | None = setting(
        None,
        option=Option("--max-examples", "VPP_TEST_MAX_EXAMPLES", "examples per generated "
                      "test (default: the profile's)", positive_int, "N"),
    )
    profile: str = setting(
        "default",
        option=Option("--profile", "VPP_TEST_PROFILE", "how much to run",
                      choice("quick", "default", "thorough")),
    )
    hypothesis_dir: str | None = setting(
        None,
        option=Option("--hypothesis-dir", "VPP_TEST_HYPOTHESIS_DIR", "where Hypothesis keeps its "
                      "files (its constants cache)", metavar="DIR",
                      default_text="a temporary folder, removed after the run"),
    )
    min_coverage: float | None = setting(
        None,
        option=Option("--min-coverage", "VPP_TEST_MIN_COVERAGE", "fail the run when coverage "
                      "(the mean of legal edges taken, illegal moves tried and checks "
                      "exercised, in percent) is below PERCENT", percent, "PERCENT"),
    )


def _server_setting(name: str) -> Any:
    """One of `serve`'s settings for the proxy: its flag, meaning and default as the server
    declares it, its variable under VPP_PROXY_ (VPP_MAX_HEADERS: VPP_PROXY_MAX_HEADERS)."""
    item = next(f for f in dataclasses.fields(Settings) if f.name == name)
    option: Option = item.metadata["option"]
    env = option.env.replace("VPP_", "VPP_PROXY_", 1) if option.env else None
    return setting(item.default, option=dataclasses.replace(option, env=env))


@dataclass(frozen=True)
class ProxyOptions:
    """`vpp-sandbox proxy`: live traffic checked against the contract."""

    upstream: str | None = setting(
        None,
        option=Option("--upstream", "VPP_PROXY_UPSTREAM", "the implementation, e.g. "
                      "https://staging.example.com", metavar="URL", required=True),
    )
    host: str = setting(
        "127.0.0.1", option=Option("--host", "VPP_PROXY_HOST", "interface to listen on")
    )
    port: int = setting(8090, option=Option("--port", "VPP_PROXY_PORT", "port", whole))
    mode: str = setting(
        "warn",
        option=Option("--mode", "VPP_PROXY_MODE", "warn: pass violating answers through and "
                      "log them; fail: answer them with a 502 contract_violation",
                      choice("warn", "fail")),
    )
    log: str | None = setting(
        None,
        option=Option("--log", "VPP_PROXY_LOG", "append one JSON line per violation",
                      metavar="FILE.jsonl"),
    )
    junit_xml: str | None = setting(
        None,
        option=Option("--junit-xml", "VPP_PROXY_JUNIT_XML", "JUnit report at exit, a case a "
                      "rule", metavar="FILE"),
    )
    har: str | None = setting(
        None,
        option=Option("--har", "VPP_PROXY_HAR", "every exchange as a HAR 1.2 log",
                      metavar="FILE.har"),
    )
    timeout: float = setting(
        30.0,
        option=Option("--timeout", "VPP_PROXY_TIMEOUT", "seconds to wait for the upstream",
                      positive_float, "SECONDS"),
    )
    max_body_bytes: int = setting(
        1024 * 1024,
        option=Option("--max-body-bytes", "VPP_PROXY_MAX_BODY_BYTES", "larger request bodies "
                      "are a 413, never forwarded", positive_int, "BYTES"),
    )
    max_response_bytes: int = setting(
        16 * 1024 * 1024,
        option=Option("--max-response-bytes", "VPP_PROXY_MAX_RESPONSE_BYTES", "answers larger "
                      "than this, as sent or decoded (gzip, deflate), are a 502", positive_int,
                      "BYTES"),
    )
    max_participations: int = setting(
        5000,
        option=Option("--max-participations", "VPP_PROXY_MAX_PARTICIPATIONS", "participations "
                      "the proxy remembers for the cross-request rules", positive_int, "N"),
    )
    # The sandbox's HTTP limits (mock_server/compat.py and intake.py), composed around the
    # proxy by `proxy_serving`: the same code, and the same settings under VPP_PROXY_ names.
    http: str = _server_setting("http")
    max_header_bytes: int = _server_setting("max_header_bytes")
    max_headers: int = _server_setting("max_headers")
    header_timeout: float = _server_setting("header_timeout")
    body_timeout: float = _server_setting("body_timeout")
    idle_timeout: float = _server_setting("idle_timeout")
    keep_alive_timeout: float = _server_setting("keep_alive_timeout")
    max_connections: int = _server_setting("max_connections")


def proxy_serving(resolved: argparse.Namespace) -> Any:
    """The proxy served as the sandbox is: uvicorn's protocol with the limits of
    `mock_server.compat` and the intake of `mock_server.intake` around the proxy's app (the
    same code; `contract_tests` imports none of it). A `contract_tests.proxy.Serving`; a
    `CompatError` when the installed uvicorn lacks what the limits are built on."""
    from vpp_sandbox.contract_tests.proxy import CONTEXT, Serving
    from vpp_sandbox.mock_server import compat, intake

    http = compat.check(resolved.http)
    limits = compat.Limits(
        max_header_bytes=resolved.max_header_bytes,
        header_timeout=resolved.header_timeout,
        idle_timeout=resolved.idle_timeout,
        max_connections=resolved.max_connections,
        http=http,
        context=CONTEXT,
        server="vpp-sandbox proxy",
    )

    def wrap(app: Any) -> Any:
        # No trailing-slash rule and no media checks: the path, codings and charsets go to
        # the upstream as sent, and its answer is what is judged.
        checked = intake.IntakeMiddleware(
            app,
            max_body_bytes=resolved.max_body_bytes,
            max_headers=resolved.max_headers,
            max_header_bytes=resolved.max_header_bytes,
            body_timeout=resolved.body_timeout,
            route_of=None,
            media=False,
        )
        return intake.Refusals(checked, context=CONTEXT, headers={"X-Vpp-Proxy": "error"})

    return Serving(
        http=compat.protocol_class(limits),
        wrap=wrap,
        config={
            "h11_max_incomplete_event_size": resolved.max_header_bytes,
            "timeout_keep_alive": resolved.keep_alive_timeout,
        },
        note=(
            f"HTTP: {http}; heads up to {resolved.max_header_bytes} bytes in "
            f"{resolved.header_timeout:g} s, bodies up to {resolved.max_body_bytes} bytes in "
            f"{resolved.body_timeout:g} s, answers up to {resolved.max_response_bytes} bytes, "
            f"{resolved.max_connections} connections"
        ),
    )


def _version() -> str:
    try:
        return metadata.version("vpp-sandbox")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vpp-sandbox",
        description="Stateful sandbox and contract tests for the Flatpeak VPP participations API. "
        "Every flag is also a VPP_ environment variable (named in its help).",
    )
    parser.add_argument("--version", action="version", version=f"vpp-sandbox {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the sandbox API server")
    options.add_arguments(serve, Settings)
    test = sub.add_parser("test", help="run the contract suites against an implementation")
    options.add_arguments(test, ContractOptions)
    proxy = sub.add_parser(
        "proxy",
        help="forward to an implementation and check every exchange against the contract",
    )
    options.add_arguments(proxy, ProxyOptions)
    fixtures = sub.add_parser("fixtures", help="generate a seeded world as JSON")
    fixtures.add_argument("--world", required=True, help="demo, edge-cases or load")
    fixtures.add_argument("--seed", type=int, default=0)
    fixtures.add_argument("--size", type=int, help="participations (load world)")
    fixtures.add_argument("--out", required=True, metavar="FILE", help="output file, - for stdout")
    return parser


def _resolved(cls: type, args: argparse.Namespace, environ: Any) -> argparse.Namespace:
    """Defaults, then variables, then flags; a missing required one names its flag and
    variable."""
    values = {name: default for name, _, default in options.options_of(cls)}
    values.update(options.from_env(cls, environ))
    values.update(options.given(args, cls))
    missing = [
        f"{option.flag} (or {option.env})"
        for name, option, _ in options.options_of(cls)
        if option.required and values.get(name) in (None, "")
    ]
    if missing:
        raise ValueError(f"give {', '.join(missing)}")
    return argparse.Namespace(command=args.command, **values)


def _in_hypothesis_dir(where: str | None, call: Callable[[], int]) -> int:
    """Run `call` with Hypothesis keeping its files in `where`, else in a temporary folder: a
    contract run drops no `.hypothesis/` into the user's working directory unasked (and puts
    back the folder it found, for a caller in the same process)."""
    from hypothesis.configuration import set_hypothesis_home_dir, storage_directory

    before = storage_directory(intent_to_write=False).path
    with tempfile.TemporaryDirectory(prefix="vpp-hypothesis-") as folder:
        set_hypothesis_home_dir(folder if where is None else where)
        try:
            return call()
        finally:
            set_hypothesis_home_dir(before)


def main(argv: Sequence[str] | None = None) -> int:
    import os

    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from vpp_sandbox.mock_server.server import serve

        try:
            settings = Settings.from_env(**options.given(args, Settings))
        except ValueError as exc:  # a bad VPP_* variable, named
            print(f"vpp-sandbox serve: {exc}", file=sys.stderr)
            return 2
        return serve(settings)
    if args.command in ("test", "proxy"):
        cls = ContractOptions if args.command == "test" else ProxyOptions
        try:
            resolved = _resolved(cls, args, os.environ)
        except ValueError as exc:
            print(f"vpp-sandbox {args.command}: {exc}", file=sys.stderr)
            return 2
        try:
            if args.command == "test":
                from vpp_sandbox.contract_tests.runner import run
            else:
                from vpp_sandbox.contract_tests.proxy import run as run_proxy
        except ModuleNotFoundError as exc:
            if exc.name not in ("schemathesis", "hypothesis"):
                raise
            print(
                f"vpp-sandbox {args.command} needs the contract suite's libraries "
                f"({exc.name} is not installed): pip install 'vpp-sandbox[contract]'",
                file=sys.stderr,
            )
            return 2
        if args.command == "test":
            from vpp_sandbox.contract_tests.preflight import problem_with

            problem = problem_with(resolved.base_url)
            if problem is not None:
                print(f"vpp-sandbox test: {problem}", file=sys.stderr)
                return 2
            return _in_hypothesis_dir(resolved.hypothesis_dir, lambda: run(resolved))
        from vpp_sandbox.mock_server.compat import CompatError

        try:
            serving = proxy_serving(resolved)
        except CompatError as exc:
            print(f"vpp-sandbox proxy: {exc}", file=sys.stderr)
            return 2
        return run_proxy(resolved, serving)
    from vpp_sandbox.fixtures.cli import run as run_fixtures

    return run_fixtures(args)


if __name__ == "__main__":
    sys.exit(main())

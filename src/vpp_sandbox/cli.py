"""`vpp-sandbox serve | test | proxy | fixtures`: argument parsing and dispatch, nothing else."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

# Connexion imports starlette's test client, which warns about httpx on every start; that is
# noise for someone running the command (and for each process of `serve --workers N`, which
# imports this module first).
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


def _account(text: str) -> object:
    from vpp_sandbox.mock_server.settings import parse_account

    try:
        return parse_account(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(name: str) -> Callable[[str], int | float]:
    from vpp_sandbox.mock_server.settings import parse_limit

    def parse(text: str) -> int | float:
        try:
            return parse_limit(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _http(text: str) -> str:
    from vpp_sandbox.mock_server.settings import parse_http

    try:
        return parse_http(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --flag: (metavar, help); the defaults are Settings' (mock_server/settings.py).
_LIMIT_FLAGS = {
    "max_body_bytes": ("BYTES", "413 request_too_large past this body size (default 65536)"),
    "max_header_bytes": (
        "BYTES",
        "431 request_header_too_large past this size of request line and headers (default 32768)",
    ),
    "max_headers": ("N", "431 request_header_too_large past this many header fields (default 100)"),
    "header_timeout": (
        "SECONDS",
        "408 request_timeout when a request's head takes longer to arrive (default 10)",
    ),
    "body_timeout": (
        "SECONDS",
        "408 request_timeout when a body takes longer to arrive after its head (default 10)",
    ),
    "idle_timeout": ("SECONDS", "close a new connection that sends nothing this long (default 10)"),
    "keep_alive_timeout": (
        "SECONDS",
        "close a connection idle this long between requests (default 5)",
    ),
    "max_connections": (
        "N",
        "answer 503 server_busy and close connections beyond this many (default 1000)",
    ),
}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vpp-sandbox",
        description="Stateful sandbox and contract tests for the Flatpeak VPP participations API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the sandbox API server")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1, env VPP_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8080, env VPP_PORT)")
    serve.add_argument(
        "--db",
        help="a SQLite file, :memory:, or a postgresql:// URL shared by several servers "
        "(default vpp-sandbox.db, env VPP_DB)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the store (default 1, env VPP_WORKERS); a file or a "
        "postgresql:// URL, not :memory:",
    )
    serve.add_argument(
        "--account",
        action="append",
        type=_account,
        metavar="ACCOUNT_ID:API_KEY",
        help="an account and key (repeatable; sk_test_ or sk_live_ keys). "
        "Default: the sandbox account printed at start-up",
    )
    serve.add_argument(
        "--world",
        metavar="NAME|FILE.json",
        help="load a world (demo, edge-cases, load, or a JSON file from `vpp-sandbox fixtures`) "
        "into an empty store; its accounts can log in too (env VPP_WORLD)",
    )
    serve.add_argument("--seed", type=int, help="seed of the world (env VPP_SEED)")
    serve.add_argument("--size", type=int, help="participations of the load world (env VPP_SIZE)")
    serve.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_SECOND",
        help="answer 429 rate_limited (with Retry-After) past this many requests a second per "
        "account and mode (default: no limit, env VPP_RATE_LIMIT)",
    )
    serve.add_argument(
        "--admin-key",
        metavar="KEY",
        help="a shared sandbox: creating and deleting accounts on demand (POST/DELETE "
        "/_sandbox/accounts) needs Authorization: Bearer KEY (default: anyone may create; "
        "env VPP_ADMIN_KEY, which keeps the key out of the process list)",
    )
    serve.add_argument(
        "--max-accounts",
        type=_positive,
        metavar="N",
        help="at most N accounts made on demand (default 1000, env VPP_MAX_ACCOUNTS)",
    )
    serve.add_argument(
        "--max-participations",
        type=_positive,
        metavar="N",
        help="at most N participations in one account's test or live mode; creates past it "
        "are a 409 namespace_full (default 100000, env VPP_MAX_PARTICIPATIONS)",
    )
    serve.add_argument(
        "--no-autopilot",
        dest="autopilot",
        action="store_const",
        const=False,
        help="participations move only through the API (env VPP_AUTOPILOT=0)",
    )
    serve.add_argument(
        "--access-log",
        action="store_const",
        const=True,
        help="print one line per request: time, namespace, request, status, latency, request id "
        "and the error answered (env VPP_ACCESS_LOG=1); GET /_sandbox/requests shows the same",
    )

    serve.add_argument(
        "--http",
        type=_http,
        help="HTTP parser: auto (httptools when installed, else h11), httptools or h11 "
        "(env VPP_HTTP)",
    )
    for name, (metavar, text) in _LIMIT_FLAGS.items():
        serve.add_argument(
            "--" + name.replace("_", "-"),
            type=_limit(name),
            metavar=metavar,
            help=f"{text}; env VPP_{name.upper()}",
        )

    test = sub.add_parser("test", help="run the contract suites against an implementation")
    test.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080")
    test.add_argument("--account-id", required=True)
    test.add_argument("--api-key", required=True)
    test.add_argument("--second-account-id")
    test.add_argument("--second-api-key")
    test.add_argument(
        "--junit-xml", metavar="FILE", help="JUnit report: one test case per rule per suite"
    )
    test.add_argument(
        "--html", metavar="FILE", help="self-contained HTML report: failures, coverage, graph"
    )
    test.add_argument("--seed", type=int)
    test.add_argument("--max-examples", type=int)
    test.add_argument("--profile", choices=("quick", "default", "thorough"), default="default")
    test.add_argument(
        "--min-coverage",
        type=float,
        metavar="PERCENT",
        help="fail the run when coverage (the mean of legal edges taken, illegal moves tried "
        "and checks exercised, in percent) is below PERCENT",
    )

    proxy = sub.add_parser(
        "proxy",
        help="forward to an implementation and check every exchange against the contract",
    )
    proxy.add_argument(
        "--upstream", required=True, help="the implementation, e.g. https://staging.example.com"
    )
    proxy.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    proxy.add_argument("--port", type=int, default=8090, help="port (8090)")
    proxy.add_argument(
        "--mode",
        choices=("warn", "fail"),
        default="warn",
        help="warn: pass violating answers through and log them; fail: answer them with a "
        "502 contract_violation",
    )
    proxy.add_argument("--log", metavar="FILE.jsonl", help="append one JSON line per violation")
    proxy.add_argument("--junit-xml", metavar="FILE", help="JUnit report at exit, a case a rule")
    proxy.add_argument("--har", metavar="FILE.har", help="every exchange as a HAR 1.2 log")
    proxy.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the upstream (30)"
    )
    proxy.add_argument(
        "--max-body-bytes",
        type=int,
        default=1024 * 1024,
        help="larger request bodies are a 413, never forwarded (1 MiB)",
    )
    proxy.add_argument(
        "--max-participations",
        type=int,
        default=5000,
        help="participations the proxy remembers for the cross-request rules (5000)",
    )

    fixtures = sub.add_parser("fixtures", help="generate a seeded world as JSON")
    fixtures.add_argument("--world", required=True, help="demo, edge-cases or load")
    fixtures.add_argument("--seed", type=int, default=0)
    fixtures.add_argument("--size", type=int, help="participations (load world)")
    fixtures.add_argument("--out", required=True, metavar="FILE", help="output file, - for stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from vpp_sandbox.mock_server.server import serve
        from vpp_sandbox.mock_server.settings import Settings

        try:
            settings = Settings.from_env(
                host=args.host,
                port=args.port,
                db=args.db,
                accounts=tuple(args.account) if args.account else None,
                world=args.world,
                seed=args.seed,
                size=args.size,
                autopilot=args.autopilot,
                rate_limit=args.rate_limit,
                http=args.http,
                workers=args.workers,
                admin_key=args.admin_key or None,
                max_accounts=args.max_accounts,
                max_participations=args.max_participations,
                access_log=args.access_log,
                **{name: getattr(args, name) for name in _LIMIT_FLAGS},
            )
        except ValueError as exc:  # a bad VPP_* variable
            print(f"vpp-sandbox serve: {exc}", file=sys.stderr)
            return 2
        return serve(settings)
    if args.command in ("test", "proxy"):
        try:
            if args.command == "test":
                from vpp_sandbox.contract_tests.runner import run
            else:
                from vpp_sandbox.contract_tests.proxy import run
        except ModuleNotFoundError as exc:
            if exc.name not in ("schemathesis", "hypothesis"):
                raise
            print(
                f"vpp-sandbox {args.command} needs the contract suite's libraries "
                f"({exc.name} is not installed): pip install 'vpp-sandbox[contract]'",
                file=sys.stderr,
            )
            return 2
        return run(args)
    from vpp_sandbox.fixtures.cli import run as run_fixtures

    return run_fixtures(args)


if __name__ == "__main__":
    sys.exit(main())

"""`vpp-sandbox serve | test | fixtures`: argument parsing and dispatch, nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def _account(text: str) -> object:
    from vpp_sandbox.mock_server.settings import parse_account

    try:
        return parse_account(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        "--db", help="SQLite file, or :memory: (default vpp-sandbox.db, env VPP_DB)"
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
    serve.add_argument(
        "--size", type=int, help="participations of the load world (env VPP_SIZE)"
    )
    serve.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_SECOND",
        help="answer 429 rate_limited (with Retry-After) past this many requests a second per "
        "account and mode (default: no limit, env VPP_RATE_LIMIT)",
    )
    serve.add_argument(
        "--no-autopilot",
        dest="autopilot",
        action="store_const",
        const=False,
        help="participations move only through the API (env VPP_AUTOPILOT=0)",
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
    test.add_argument(
        "--profile", choices=("quick", "default", "thorough"), default="default"
    )
    test.add_argument(
        "--min-coverage",
        type=float,
        metavar="PERCENT",
        help="fail the run when coverage (the mean of legal edges taken, illegal moves tried "
        "and checks exercised, in percent) is below PERCENT",
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
        )
        return serve(settings)
    if args.command == "test":
        from vpp_sandbox.contract_tests.runner import run

        return run(args)
    from vpp_sandbox.fixtures.cli import run as run_fixtures

    return run_fixtures(args)


if __name__ == "__main__":
    sys.exit(main())

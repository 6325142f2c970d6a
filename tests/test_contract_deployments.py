"""`vpp-sandbox test --profile default` passes against every deployment of the sandbox.

One SQLite process; `serve --workers 2` on one SQLite file; two replicas on one PostgreSQL
database behind a balancer that alternates between them request by request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from round_robin import round_robin
from serve_process import served

from tests.contract_defects import SECOND
from vpp_sandbox.cli import main
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT

pytestmark = pytest.mark.slow
FIRST = DEFAULT_ACCOUNT[0]
ACCOUNTS = [arg for a in (*DEFAULT_ACCOUNT, SECOND)
            for arg in ("--account", f"{a.account_id}:{a.api_key}")]


@pytest.fixture(params=["sqlite-1-process", "sqlite-2-workers", "postgres-2-replicas"])
def base_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with ExitStack() as stack:
        if request.param == "sqlite-1-process":
            yield stack.enter_context(served("--db", str(tmp_path / "a.db"), *ACCOUNTS)).base_url
        elif request.param == "sqlite-2-workers":
            args = ("--db", str(tmp_path / "b.db"), "--workers", "2", *ACCOUNTS)
            yield stack.enter_context(served(*args)).base_url
        else:
            url = request.getfixturevalue("postgres").database()
            replicas = [stack.enter_context(served("--db", url, *ACCOUNTS)).base_url
                        for _ in (1, 2)]
            yield stack.enter_context(round_robin(replicas))


def test_the_default_profile_passes(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "test", "--base-url", base_url, "--account-id", FIRST.account_id,
        "--api-key", FIRST.api_key, "--second-account-id", SECOND.account_id,
        "--second-api-key", SECOND.api_key, "--profile", "default", "--seed", "11",
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASSED" in out

"""Shared fixtures: async tests run on asyncio (anyio's plugin); a PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, PostgresUnavailable, start_postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _running_postgres() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("VPP_REQUIRE_POSTGRES") == "1" or "not start" in str(exc):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (one per xdist worker), started on demand."""
    yield from _running_postgres()


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the module's own, which its tests may stop and start."""
    yield from _running_postgres()

"""Shared fixtures: async tests run on asyncio (anyio's plugin); a PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from postgres_server import PostgresServer, start_postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (one per xdist worker), started on demand."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()

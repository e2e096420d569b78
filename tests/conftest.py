"""Fixtures shared by every test folder.

The real Temporal dev server starts once per session (a few seconds) on free
loopback ports and is only started when a test asks for it. Tests isolate
themselves with a fresh task queue and workflow IDs of their own, not a fresh server.
PostgreSQL likewise: one throwaway cluster per session, when a test asks for it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client

from tests.postgres_cluster import PostgresCluster, debian_server_binaries
from workers.devserver import DevServer
from workers.temporal_client import connect


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A real ``temporal server start-dev``, headless, with suture's search attributes."""
    with DevServer(tmp_path_factory.mktemp("temporal"), headless=True) as server:
        yield server


@pytest.fixture
async def temporal_client(temporal_server: DevServer) -> Client:
    """A client of the session's dev server with the pydantic data converter.

    Connected per test, on the test's own event loop; connecting takes milliseconds.
    """
    return await connect(temporal_server.address, temporal_server.namespace)


@pytest.fixture
def task_queue() -> str:
    """A task queue no other test polls, so a test's worker sees only its own runs."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster | None]:
    """A throwaway PostgreSQL cluster (Debian's binaries) for the whole session.

    None when ``SUTURE_TEST_POSTGRES_URL`` names an existing server instead; the
    ``postgres_url`` fixture then uses that.
    """
    if os.environ.get("SUTURE_TEST_POSTGRES_URL"):
        yield None
        return
    binaries = debian_server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (`make postgres` installs Debian's postgresql)")
    with PostgresCluster(binaries) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresCluster | None) -> str:
    """SQLAlchemy URL of a PostgreSQL database the store's tests may wipe.

    A drill runs against PostgreSQL with
    ``Stack(state_dir, settings=Settings(state_dir=state_dir, db_url=postgres_server.database("drill")))``.
    """
    if postgres_server is None:
        return os.environ["SUTURE_TEST_POSTGRES_URL"]
    return postgres_server.database("suture_store")

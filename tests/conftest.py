"""Fixtures shared by every test folder.

The real Temporal dev server starts once per session (a few seconds) on free
loopback ports and is only started when a test asks for it. Tests isolate
themselves with a fresh task queue and workflow IDs of their own, not a fresh server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client

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

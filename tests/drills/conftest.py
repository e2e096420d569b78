"""One embedded stack for every drill of the session: starting it costs ~10 s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from sandbox.stack import Stack


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with Stack(Path(tmp_path_factory.mktemp("stack")), sandbox=True) as running:
        yield running

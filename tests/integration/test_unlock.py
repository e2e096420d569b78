"""`suture unlock` asks Temporal whether the lock's holder is still open."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suture.models import TargetClaim
from suture.store import AuditStore
from workers.cli import app
from workers.devserver import DevServer
from workers.temporal_client import connect

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_a_lock_is_taken_only_once_its_run_has_been_terminated(
    temporal_server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'suture.db'}"
    monkeypatch.setenv("SUTURE_DB_URL", url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_server.address)
    holder = f"reliability-{uuid.uuid4().hex}"

    async def start() -> None:
        client = await connect(temporal_server.address)
        await client.start_workflow("ReliabilityLoop", id=holder, task_queue=f"nobody-{uuid.uuid4().hex}")

    async def terminate() -> None:
        client = await connect(temporal_server.address)
        await client.get_workflow_handle(holder).terminate(reason="stuck")

    asyncio.run(start())
    store = AuditStore.create(url)
    assert store.claim_target(TargetClaim(target="shop/cart", workflow_id=holder, cooldown_s=0)).granted

    refused = runner.invoke(app, ["unlock", "shop/cart", "--as", "oncall-alice"], terminal_width=200)
    assert refused.exit_code == 2 and "still open" in refused.output
    assert store.lock_holder("shop/cart") == holder

    asyncio.run(terminate())
    taken = runner.invoke(app, ["unlock", "shop/cart", "--as", "oncall-alice"], terminal_width=200)
    assert taken.exit_code == 0, taken.output
    assert store.lock_holder("shop/cart") is None

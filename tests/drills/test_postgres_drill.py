"""One drill with the audit store on PostgreSQL, the store several workers share in production."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.runner import all_drills, run_on
from sandbox.stack import Stack
from suture.config import Settings
from suture.store import AuditStore
from tests.postgres_cluster import PostgresCluster

pytestmark = [pytest.mark.drill, pytest.mark.asyncio(loop_scope="session")]


async def test_a_rollback_drill_runs_with_its_audit_store_on_postgresql(
    postgres_server: PostgresCluster | None, tmp_path: Path
) -> None:
    if postgres_server is None:
        pytest.skip("SUTURE_TEST_POSTGRES_URL names a shared server; this drill needs a database of its own")
    settings = Settings(state_dir=tmp_path, db_url=postgres_server.database("drill"))
    assert settings.db_url.startswith("postgresql")
    async with Stack(tmp_path, sandbox=True, settings=settings) as stack:
        report = await run_on(stack, [all_drills()["bad-deploy-latency"]], lambda _message: None)
    [result] = report.drills
    assert result.passed, result.detail
    store = AuditStore.from_settings(settings)
    assert [run.outcome for run in store.runs()] == ["resolved"]
    assert store.verify().intact

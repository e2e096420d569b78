"""One embedded stack for every drill of the session; the reliability drills run on it once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from sandbox.drill import DrillResult
from sandbox.readiness_drills import READINESS_DRILLS
from sandbox.reliability_drills import saturated_service
from sandbox.runner import all_drills, run_on
from sandbox.stack import Stack
from sandbox.trust_drills import TRUST_DRILLS
from suture.models import LoopResult


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with Stack(Path(tmp_path_factory.mktemp("stack")), sandbox=True) as running:
        yield running


HISTORIES = Path(__file__).parents[1] / "histories"


async def record_histories(stack: Stack, runs: dict[str, str | None]) -> None:
    """Keep the drills' histories for the replay test (run with SUTURE_RECORD_HISTORIES=1).

    Re-record after an intentional, versioned change to a workflow.
    """
    if not os.environ.get("SUTURE_RECORD_HISTORIES"):
        return
    HISTORIES.mkdir(exist_ok=True)
    for name, workflow_id in runs.items():
        if workflow_id:
            history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
            (HISTORIES / f"{name}.json").write_text(history.to_json())


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def reliability(stack: Stack) -> tuple[dict[str, DrillResult], LoopResult]:
    drills = [
        drill
        for drill in all_drills().values()
        # test_trust_drills and test_readiness_drills run theirs on their own.
        if drill.loop == "reliability" and drill.name not in TRUST_DRILLS | READINESS_DRILLS
    ]
    report, (approved, _checks) = await asyncio.gather(
        run_on(stack, drills, lambda _message: None),
        saturated_service(stack, "search-approved", approver="oncall-alice"),
    )
    results = {result.scenario: result for result in report.drills}
    runs = {name: result.workflow_id for name, result in results.items()}
    await record_histories(stack, {**runs, "approval-granted": approved.workflow_id})
    return results, approved

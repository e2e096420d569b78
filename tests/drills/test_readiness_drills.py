"""The readiness drills end to end: stages that cap runs, gates that refuse, a permission taken away.

They run on the session's stack through the same runner as ``suture demo`` (the
stage drills alone, after the others); each test checks one drill's row.
"""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from sandbox.drill import DrillResult
from sandbox.runner import all_drills, run_on
from sandbox.stack import Stack
from suture.models import Loop
from suture.stages import Stage

pytestmark = [pytest.mark.drill, pytest.mark.asyncio(loop_scope="session")]

NAMES = ("stage-caps-autonomy", "blocked-write-permission", "stale-telemetry-gate")
"""dry-run-rate-gate runs with the resource drills, on their estate, whose size its rate is judged on."""


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def readiness(stack: Stack) -> dict[str, DrillResult]:
    drills = [all_drills()[name] for name in NAMES]
    report = await run_on(stack, drills, lambda _message: None)
    return {result.scenario: result for result in report.drills}


def passed(results: dict[str, DrillResult], name: str) -> DrillResult:
    result = results[name]
    assert result.passed, json.dumps(result.model_dump(mode="json"), indent=1)
    return result


async def test_an_autonomous_policy_in_a_loop_at_dry_run_only_records_what_it_would_have_done(
    readiness: dict[str, DrillResult],
) -> None:
    result = passed(readiness, "stage-caps-autonomy")
    assert result.outcome == "dry_run" and result.actions == []


async def test_a_missing_write_permission_is_blocked_in_readiness_and_the_run_escalates_naming_it(
    readiness: dict[str, DrillResult],
) -> None:
    result = passed(readiness, "blocked-write-permission")
    assert result.outcome == "escalated" and result.actions == []
    assert "patch apps/deployments in shop-locked" in result.detail


async def test_stale_telemetry_blocks_reliability_and_stage_advance_is_refused_with_that_gate(
    readiness: dict[str, DrillResult],
) -> None:
    result = passed(readiness, "stale-telemetry-gate")
    assert "telemetry freshness" in result.detail


async def test_every_loop_is_live_again_once_the_stage_drills_are_over(
    readiness: dict[str, DrillResult], stack: Stack
) -> None:
    assert {loop: stack.store.stage(loop).stage for loop in Loop} == {loop: Stage.LIVE for loop in Loop}

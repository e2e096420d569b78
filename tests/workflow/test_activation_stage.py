"""A loop never acts beyond its activation stage, in the time-skipping environment with fake activities."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from suture.models import ApprovalDecision, Mode, Outcome
from suture.stages import Stage
from tests.workflow.test_kill_switch import acted, wait_for_step
from tests.workflow.test_reliability_loop import run_to_end, start, world_for
from tests.workflow.test_security_loop import drill_world, leaked_key_call, run, usual_baseline
from workflows.reliability import ReliabilityLoop

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("stage", [Stage.READ_ONLY, Stage.DRY_RUN, Stage.LIVE_SCOPED])
async def test_an_autonomous_policy_below_live_records_what_it_would_have_done(
    env: WorkflowEnvironment, tmp_path: Path, stage: Stage
) -> None:
    world = world_for(tmp_path, stage=stage)

    result = await run_to_end(env, world)

    assert result.outcome == Outcome.DRY_RUN
    assert acted(world) == [] and result.actions == []
    assert result.mode == Mode.DRY_RUN
    assert f"{stage} stage" in result.reason
    capped = [entry.detail for entry in world.audit if entry.step == "stage_capped"]
    assert capped and "would have used autonomous" in capped[0]
    assert any(entry.step == "dry_run" and "would have done" in entry.detail for entry in world.audit)
    assert world.called("audit.claim_target") == [], "a capped run claims nothing"


async def test_a_live_loop_acts_as_its_policy_says(env: WorkflowEnvironment, tmp_path: Path) -> None:
    world = world_for(tmp_path, stage=Stage.LIVE)

    result = await run_to_end(env, world)

    assert result.outcome == Outcome.RESOLVED
    assert [read.loop for read in world.stage_reads] == ["reliability", "reliability"]
    assert not any(entry.step == "stage_capped" for entry in world.audit)


async def test_a_loop_moved_back_while_a_run_waits_for_approval_takes_no_action(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, mode="supervised", stage=Stage.LIVE)
    handle, worker = await start(env, world)
    async with worker:
        await wait_for_step(handle, "awaiting_approval")
        world.stage = Stage.DRY_RUN
        await handle.signal(ReliabilityLoop.approve, ApprovalDecision(approver="alice", note="go"))
        result = await handle.result()

    assert result.outcome == Outcome.SUPPRESSED
    assert "moved to stage dry_run" in result.reason
    assert acted(world) == []


async def test_the_security_loop_at_dry_run_contains_nothing(env: WorkflowEnvironment) -> None:
    world = drill_world(baseline=usual_baseline(), stage=Stage.DRY_RUN)

    result = await run(env, world, leaked_key_call())

    assert result.outcome == Outcome.DRY_RUN
    assert world.called("iam.deactivate_access_key") == []
    assert "dry_run stage" in result.reason


async def test_live_scoped_leaves_the_security_loop_recording_only(env: WorkflowEnvironment) -> None:
    world = drill_world(baseline=usual_baseline(), stage=Stage.LIVE_SCOPED)

    result = await run(env, world, leaked_key_call())

    assert result.outcome == Outcome.DRY_RUN
    assert world.called("iam.deactivate_access_key") == []


async def test_a_missing_write_permission_escalates_before_anything_is_touched(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    lacking = "patch apps/deployments in shop (denied)"
    world = world_for(tmp_path, missing_permissions=[lacking])

    result = await run_to_end(env, world)

    assert result.outcome == Outcome.ESCALATED
    assert acted(world) == []
    assert lacking in result.reason
    assert world.briefings and lacking in world.briefings[0].reason
    assert [action.type for action in world.permission_asks[0].actions] == ["k8s.rollback"]

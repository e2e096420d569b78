"""The kill switch, read before each action, in the time-skipping environment with fake activities."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from suture.models import ApprovalDecision, Outcome
from tests.workflow.fakes import FakeWorld, load_test_policies
from tests.workflow.test_reliability_loop import POLICY, run_to_end, start, world_for
from tests.workflow.test_security_loop import drill_world, leaked_key_call, run, usual_baseline
from workflows.reliability import ReliabilityLoop

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACTIONS = "k8s.snapshot_deployment", "k8s.rollback_deployment", "k8s.scale_deployment"


def acted(world: FakeWorld) -> list[str]:
    return [name for name, _ in world.calls if name in ACTIONS]


async def wait_for_step(handle: WorkflowHandle, step: str) -> None:
    for _ in range(200):
        if (await handle.query(ReliabilityLoop.status)).step == step:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the run never reached {step}")


async def test_a_paused_loop_ends_suppressed_without_touching_anything(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, paused="reliability", paused_by="oncall-bob", paused_reason="db migration")

    result = await run_to_end(env, world)

    assert result.outcome == Outcome.SUPPRESSED
    assert result.actions == []
    assert acted(world) == []
    assert "reliability loop" in result.reason
    assert "oncall-bob" in result.reason and "db migration" in result.reason
    assert world.briefings == []
    assert any(entry.step == "suppressed" and "oncall-bob" in entry.detail for entry in world.audit)
    assert world.called("audit.release_target")[0].acted is False


async def test_the_global_switch_pauses_every_loop(env: WorkflowEnvironment, tmp_path: Path) -> None:
    world = world_for(tmp_path, paused="all")

    result = await run_to_end(env, world)

    assert result.outcome == Outcome.SUPPRESSED
    assert "every loop" in result.reason
    assert acted(world) == []


async def test_pausing_another_loop_leaves_this_one_acting(env: WorkflowEnvironment, tmp_path: Path) -> None:
    world = world_for(tmp_path, paused="security")

    result = await run_to_end(env, world)

    assert result.outcome == Outcome.RESOLVED
    assert len(world.called("k8s.rollback_deployment")) == 1
    assert [read.loop for read in world.switch_reads] == ["reliability"]


async def test_a_switch_pulled_while_waiting_for_approval_stops_the_approved_action(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, mode="supervised")
    handle, worker = await start(env, world)
    async with worker:
        await wait_for_step(handle, "awaiting_approval")
        world.paused = "reliability"
        await handle.signal(ReliabilityLoop.approve, ApprovalDecision(approver="alice", note="go"))
        result = await handle.result()

    assert result.outcome == Outcome.SUPPRESSED
    assert result.approver == "alice", "the approval is kept on record"
    assert "oncall-alice" in result.reason and "change freeze" in result.reason
    assert acted(world) == []


async def test_a_switch_pulled_between_two_actions_undoes_the_first_and_escalates(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    two_actions = POLICY.replace("{mode}", "autonomous").replace(
        "      - type: k8s.rollback\n",
        "      - type: k8s.rollback\n      - type: k8s.scale\n        params: {by: 1, max_replicas: 4}\n",
    )
    world = FakeWorld(
        policies=load_test_policies(tmp_path, two_actions), pause_after="k8s.rollback_deployment"
    )

    result = await run_to_end(env, world)

    assert result.outcome == Outcome.ESCALATED
    assert world.called("k8s.scale_deployment") == []
    assert len(world.called("k8s.restore_deployment")) == 1, "the rollback is undone"
    assert [(a.type, a.compensated) for a in result.actions] == [("k8s.rollback", True)]
    assert "every loop" in world.briefings[0].reason and "undone" in world.briefings[0].reason


async def test_a_paused_security_loop_leaves_a_leaked_key_active_and_says_why(
    env: WorkflowEnvironment,
) -> None:
    world = drill_world(baseline=usual_baseline(), paused="security", paused_by="secops-bob")

    result = await run(env, world, leaked_key_call())

    assert result.outcome == Outcome.SUPPRESSED
    assert "security loop" in result.reason and "secops-bob" in result.reason
    assert world.called("iam.deactivate_access_key") == []
    assert world.called("iam.snapshot_access_key") == []


async def test_pausing_the_reliability_loop_does_not_stop_a_containment(env: WorkflowEnvironment) -> None:
    world = drill_world(baseline=usual_baseline(), paused="reliability")

    result = await run(env, world, leaked_key_call())

    assert result.outcome == Outcome.RESOLVED
    assert len(world.called("iam.deactivate_access_key")) == 1

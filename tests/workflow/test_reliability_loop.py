"""The reliability loop's decisions, in the time-skipping environment with fake activities."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from suture.identity import reliability_workflow_id
from suture.models import (
    AlertNotice,
    ApprovalDecision,
    LoopResult,
    Mode,
    Outcome,
    ReliabilityLoopInput,
    UndoRequest,
    Verdict,
)
from tests.workflow.fakes import FakeWorld, load_test_policies
from workflows.reliability import ReliabilityLoop
from workflows.undo import UndoRun, undo_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

POLICY = """
policies:
  - name: checkout-latency
    match: {alertname: HighLatency}
    mode: {mode}
    min_confidence: 0.7
    signatures:
      - name: regression-after-rollout
        recent_rollout_within: 30m
        confidence: 0.85
    evidence: ['latency{service="$service"}']
    actions:
      - type: k8s.rollback
    verify:
      query: 'latency{service="$service"}'
      condition: '< 0.5'
      window: 30s
    approval:
      approvers: [alice]
      timeout: 1h
"""


def alert(name: str = "HighLatency") -> AlertNotice:
    fingerprint = uuid.uuid4().hex[:16]
    return AlertNotice(
        fingerprint=fingerprint,
        status="firing",
        labels={"alertname": name, "namespace": "shop", "deployment": "checkout", "service": "checkout"},
        annotations={"summary": "checkout p99 above 500 ms"},
        starts_at=datetime.now(UTC),
        received_at=datetime.now(UTC),
    )


def world_for(tmp_path: Path, mode: str = "autonomous", **kwargs: object) -> FakeWorld:
    return FakeWorld(policies=load_test_policies(tmp_path, POLICY.replace("{mode}", mode)), **kwargs)  # type: ignore[arg-type]


async def start(
    env: WorkflowEnvironment, world: FakeWorld, notice: AlertNotice | None = None
) -> tuple[WorkflowHandle, Worker]:
    queue = f"test-{uuid.uuid4()}"
    worker = Worker(env.client, task_queue=queue, workflows=[ReliabilityLoop], activities=world.activities())
    notice = notice or alert()
    handle = await env.client.start_workflow(
        ReliabilityLoop.run,
        ReliabilityLoopInput(alert=notice),
        id=reliability_workflow_id(notice),
        task_queue=queue,
    )
    return handle, worker


async def run_to_end(
    env: WorkflowEnvironment, world: FakeWorld, notice: AlertNotice | None = None
) -> LoopResult:
    handle, worker = await start(env, world, notice)
    async with worker:
        return await handle.result()


async def test_a_regression_after_a_rollout_is_rolled_back_and_verified(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path)
    result = await run_to_end(env, world)
    assert result.outcome == Outcome.RESOLVED
    assert result.verdict == Verdict.HEALTHY
    assert [(a.type, a.target, a.mode, a.compensated) for a in result.actions] == [
        ("k8s.rollback", "shop/checkout", Mode.AUTONOMOUS, False)
    ]
    assert len(world.called("k8s.rollback_deployment")) == 1
    assert world.called("k8s.restore_deployment") == []
    assert result.policy == "checkout-latency" and result.policy_version
    assert result.timeline.detected and result.timeline.acted and result.timeline.verified
    assert [entry.step for entry in world.audit][:3] == ["detected", "assessed", "decided"]
    assert world.called("audit.release_target")[0].acted is True
    assert world.closed == [result]


async def test_the_rollback_is_undone_and_escalated_when_latency_stays_high(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, verdicts=[Verdict.UNHEALTHY])
    result = await run_to_end(env, world)
    assert result.outcome == Outcome.ESCALATED
    assert result.verdict == Verdict.UNHEALTHY
    assert [a.compensated for a in result.actions] == [True]
    assert len(world.called("k8s.rollback_deployment")) == 1, "the same action is never attempted twice"
    assert len(world.called("k8s.restore_deployment")) == 1
    assert result.undo == [], "nothing is left to undo once compensated"
    assert len(world.briefings) == 1 and "undone" in world.briefings[0].reason
    assert world.briefings[0].actions_taken[0].compensated


async def test_stale_metrics_escalate_without_undoing_or_repeating_the_action(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, verdicts=[Verdict.UNKNOWN])
    result = await run_to_end(env, world)
    assert result.outcome == Outcome.ESCALATED
    assert result.verdict == Verdict.UNKNOWN
    assert len(world.called("k8s.rollback_deployment")) == 1
    assert world.called("k8s.restore_deployment") == []
    assert len(result.undo) == 1, "the undo stays available to a human"


async def test_an_alert_no_policy_matches_reaches_a_human_with_a_briefing(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path)
    result = await run_to_end(env, world, alert("DiskPressureNovel"))
    assert result.outcome == Outcome.ESCALATED
    assert result.actions == []
    assert "no policy matches DiskPressureNovel" in world.briefings[0].reason
    assert world.called("k8s.snapshot_deployment") == []


async def test_an_old_rollout_gives_too_little_confidence_to_act(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, rollout_age=timedelta(days=2))
    result = await run_to_end(env, world)
    assert result.outcome == Outcome.ESCALATED
    assert result.actions == []
    assert "confidence 0.30 is below" in result.reason
    assert world.briefings[0].would_have_done, "the briefing says what automation would have done"
    assert world.briefings[0].recent_changes


async def test_a_supervised_action_nobody_approves_escalates_after_the_timeout(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, mode="supervised")
    result = await run_to_end(env, world)
    assert result.outcome == Outcome.ESCALATED
    assert "nobody approved within 3600s" in result.reason
    assert result.actions == []
    assert world.called("audit.release_target")[0].acted is False


async def test_an_approved_action_runs_and_an_unlisted_approver_is_ignored(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, mode="supervised")
    handle, worker = await start(env, world)
    async with worker:
        await _wait_for_step(handle, "awaiting_approval")
        await handle.signal(ReliabilityLoop.approve, ApprovalDecision(approver="mallory", note="let me"))
        await handle.signal(ReliabilityLoop.approve, ApprovalDecision(approver="alice", note="go"))
        result = await handle.result()
    assert result.outcome == Outcome.RESOLVED
    assert result.human_touched and result.approver == "alice"
    assert result.timeline.approved is not None
    ignored = [entry for entry in world.audit if entry.step == "approval_ignored"]
    assert [entry.actor for entry in ignored] == ["mallory"]


async def test_a_rejected_action_is_not_taken(env: WorkflowEnvironment, tmp_path: Path) -> None:
    world = world_for(tmp_path, mode="supervised")
    handle, worker = await start(env, world)
    async with worker:
        await _wait_for_step(handle, "awaiting_approval")
        await handle.signal(ReliabilityLoop.reject, ApprovalDecision(approver="alice", note="not now"))
        result = await handle.result()
    assert result.outcome == Outcome.REJECTED
    assert world.called("k8s.rollback_deployment") == []


async def test_a_target_in_cooldown_is_suppressed(env: WorkflowEnvironment, tmp_path: Path) -> None:
    world = world_for(tmp_path, claim_granted=False)
    result = await run_to_end(env, world)
    assert result.outcome == Outcome.SUPPRESSED
    assert "cooldown" in result.reason
    assert world.called("k8s.snapshot_deployment") == []


async def test_dry_run_records_what_it_would_have_done(env: WorkflowEnvironment, tmp_path: Path) -> None:
    world = world_for(tmp_path, mode="dry_run")
    result = await run_to_end(env, world)
    assert result.outcome == Outcome.DRY_RUN
    assert world.called("k8s.rollback_deployment") == []
    assert any(entry.step == "dry_run" and "k8s.rollback" in entry.detail for entry in world.audit)


async def test_an_alert_that_resolves_while_waiting_for_approval_ends_without_action(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, mode="supervised")
    notice = alert()
    handle, worker = await start(env, world, notice)
    async with worker:
        await _wait_for_step(handle, "awaiting_approval")
        await handle.signal(ReliabilityLoop.alert_resolved, notice.model_copy(update={"status": "resolved"}))
        result = await handle.result()
    assert result.outcome == Outcome.SUPPRESSED
    assert world.called("k8s.rollback_deployment") == []


async def _wait_for_step(handle: WorkflowHandle, step: str) -> None:
    for _ in range(200):
        status = await handle.query(ReliabilityLoop.status)
        if status.step == step:
            return
        import asyncio

        await asyncio.sleep(0.05)
    raise AssertionError(f"the run never reached {step}")


async def test_a_human_ordered_undo_restores_what_a_resolved_run_changed(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, verdicts=[Verdict.UNKNOWN])
    run = await run_to_end(env, world)
    queue = f"test-{uuid.uuid4()}"
    request = UndoRequest(run_workflow_id=run.workflow_id, requested_by="alice")
    async with Worker(env.client, task_queue=queue, workflows=[UndoRun], activities=world.activities()):
        undone = await env.client.execute_workflow(
            UndoRun.run, request, id=undo_workflow_id(run.workflow_id), task_queue=queue
        )
    assert undone.outcome == Outcome.ROLLED_BACK
    assert [(a.type, a.compensated) for a in undone.actions] == [("k8s.rollback", True)]
    assert len(world.called("k8s.restore_deployment")) == 1
    assert {entry.actor for entry in world.audit if entry.workflow_id == undone.workflow_id} == {"alice"}


async def test_a_deployment_that_vanished_is_handed_to_a_human_not_crashed_on(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, target_missing=True)
    result = await run_to_end(env, world)
    assert result.outcome == Outcome.ESCALATED
    assert "could not capture its undo state" in result.reason and "not found" in result.reason
    assert world.called("k8s.rollback_deployment") == []
    assert len(world.called("k8s.snapshot_deployment")) == 1, "a missing target is not retried"

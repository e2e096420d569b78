"""Hostile answers to a running loop: malformed signals, unlisted people, forged undos.

Every case here once hung a run for good or let someone act who should not: a
signal without a payload failed every workflow task, and undo authority was
checked only by the CLI against the caller's own policy files.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from suture.models import (
    ApprovalAnswer,
    ApprovalReceipt,
    ApprovalRequest,
    LoopResult,
    Outcome,
    UndoReceipt,
    UndoRequest,
    Verdict,
)
from tests.workflow.fakes import FakeWorld
from tests.workflow.test_reliability_loop import alert, start, world_for
from workflows.reliability import ReliabilityLoop
from workflows.undo import UndoRun, undo_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

MALFORMED = [
    (),  # the Temporal CLI without --input
    (None,),  # --input null
    ("alice",),
    (42,),
    ([],),
    ({"approver": 5},),
    ({"approver": ""},),
    ({"approver": "alice", "note": "go", "extra": True},),
    ({"approver": "a" * 200_000},),
    ({"approver": "alice"}, {"approver": "alice"}),
]


async def waiting_run(env: WorkflowEnvironment, tmp_path: Path) -> tuple[WorkflowHandle, Worker, FakeWorld]:
    world = world_for(tmp_path, mode="supervised")
    handle, worker = await start(env, world)
    return handle, worker, world


async def wait_for_step(handle: WorkflowHandle, step: str) -> None:
    for _ in range(200):
        if (await handle.query(ReliabilityLoop.status)).step == step:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the run never reached {step}")


@pytest.mark.parametrize("name", ["approve", "reject", "evidence", "alert_resolved"])
async def test_malformed_signals_are_audited_and_the_run_still_takes_a_proper_approval(
    env: WorkflowEnvironment, tmp_path: Path, name: str
) -> None:
    handle, worker, world = await waiting_run(env, tmp_path)
    async with worker:
        await wait_for_step(handle, "awaiting_approval")
        for args in MALFORMED:
            await handle.signal(name, args=list(args))
        await handle.signal("approve", {"approver": "alice", "note": "go"})
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.outcome == Outcome.RESOLVED and result.approver == "alice"
    ignored = [entry.detail for entry in world.audit if entry.step == "signal_ignored"]
    assert len(ignored) == len(MALFORMED), ignored
    assert all(detail.startswith(f"signal {name!r} ignored") for detail in ignored)
    assert world.called("audit.release_target"), "the target lock is released"


async def test_a_resolved_notice_for_another_alert_does_not_clear_the_run(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    handle, worker, world = await waiting_run(env, tmp_path)
    stranger = alert().model_copy(update={"status": "resolved"})
    async with worker:
        await wait_for_step(handle, "awaiting_approval")
        await handle.signal(ReliabilityLoop.alert_resolved, stranger)
        await handle.signal("approve", {"approver": "alice"})
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.outcome == Outcome.RESOLVED
    assert any("is not this run's" in e.detail for e in world.audit if e.step == "signal_ignored")


async def test_the_decide_update_refuses_an_unlisted_name_at_once_and_takes_a_listed_one(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    handle, worker, _world = await waiting_run(env, tmp_path)
    async with worker:
        await wait_for_step(handle, "awaiting_approval")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                "decide", ApprovalRequest(answer=ApprovalAnswer.APPROVE, approver="mallory")
            )
        assert "'mallory' is not an approver" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError, match="Workflow update failed"):
            await handle.execute_update(
                "decide", ApprovalRequest(answer=ApprovalAnswer.TIMEOUT, approver="alice")
            )
        receipt = await handle.execute_update(
            "decide",
            ApprovalRequest(answer=ApprovalAnswer.APPROVE, approver="alice", note="go"),
            result_type=ApprovalReceipt,
        )
        assert receipt.answer == ApprovalAnswer.APPROVE and receipt.policy == "checkout-latency"
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                "decide", ApprovalRequest(answer=ApprovalAnswer.REJECT, approver="alice")
            )
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.outcome == Outcome.RESOLVED and result.approver == "alice"


async def finished(env: WorkflowEnvironment, world: FakeWorld) -> LoopResult:
    handle, worker = await start(env, world)
    async with worker:
        return await handle.result()


async def test_only_a_name_the_pinned_policy_lists_may_undo_and_the_caller_hears_why(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path, verdicts=[Verdict.UNKNOWN])
    run = await finished(env, world)
    assert run.undo and run.undo_approvers == ["alice"]
    queue = f"test-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[UndoRun], activities=world.activities()):
        forged = await env.client.start_workflow(
            UndoRun.run,
            UndoRequest(run_workflow_id=run.workflow_id, requested_by="mallory"),
            id=f"{undo_workflow_id(run.workflow_id)}-forged",
            task_queue=queue,
        )
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await forged.execute_update("authorisation", result_type=UndoReceipt)
        with pytest.raises(WorkflowFailureError):
            await forged.result()
        assert world.called("k8s.restore_deployment") == []

        granted = await env.client.start_workflow(
            UndoRun.run,
            UndoRequest(run_workflow_id=run.workflow_id, requested_by="alice", note="bad idea"),
            id=undo_workflow_id(run.workflow_id),
            task_queue=queue,
        )
        receipt = await granted.execute_update("authorisation", result_type=UndoReceipt)
        undone = await granted.result()
    cause = str(refused.value.cause)
    assert "'mallory' may not undo" in cause and "lists alice" in cause
    assert any(e.step == "undo_refused" and e.actor == "mallory" for e in world.audit)
    assert receipt.actions == ["k8s.rollback on shop/checkout"]
    assert undone.outcome == Outcome.ROLLED_BACK and undone.approver == "alice"
    assert len(world.called("k8s.restore_deployment")) == 1


async def test_an_undo_started_by_hand_for_a_run_that_does_not_exist_fails_without_acting(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = world_for(tmp_path)
    queue = f"test-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[UndoRun], activities=world.activities()):
        with pytest.raises(WorkflowFailureError):
            await env.client.execute_workflow(
                UndoRun.run,
                UndoRequest(run_workflow_id="reliability-nope", requested_by="alice"),
                id=f"undo-{uuid.uuid4()}",
                task_queue=queue,
            )
    assert world.called("k8s.restore_deployment") == []

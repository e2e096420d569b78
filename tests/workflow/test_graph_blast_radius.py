"""Blast radius from the dependency graph: a policy's ``max_dependents`` sends a wide action to approval."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from suture.models import ApprovalDecision, Mode, Outcome, ReliabilityLoopInput
from tests.workflow.graph_fakes import FakeGraph, alert, graph_world
from workflows.reliability import ReliabilityLoop

pytestmark = pytest.mark.asyncio(loop_scope="module")

WIDE = ["shop/cart", "shop/checkout", "shop/orders", "shop/search"]
"""Four dependents of the gateway; its policy allows two without approval."""


async def start_gateway_run(env: WorkflowEnvironment, world: FakeGraph) -> tuple[WorkflowHandle, Worker]:
    import uuid

    queue = f"test-{uuid.uuid4()}"
    worker = Worker(env.client, task_queue=queue, workflows=[ReliabilityLoop], activities=world.activities())
    notice = alert("gateway", "GatewayMemory")
    handle = await env.client.start_workflow(
        ReliabilityLoop.run, ReliabilityLoopInput(alert=notice), id=notice.fingerprint, task_queue=queue
    )
    return handle, worker


async def test_a_restart_reaching_more_dependents_than_allowed_waits_for_approval(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = graph_world(tmp_path, dependents=WIDE)
    handle, worker = await start_gateway_run(env, world)
    async with worker:
        status = await _step(handle, "awaiting_approval")
        assert world.called("k8s.restart_deployment") == [], "nothing restarts before someone approves"
        await handle.signal(ReliabilityLoop.approve, ApprovalDecision(approver="alice", note="go"))
        result = await handle.result()
    assert status.mode == Mode.SUPERVISED
    assert result.outcome == Outcome.RESOLVED and result.approver == "alice"
    assert [(a.type, a.mode) for a in result.actions] == [("k8s.restart", Mode.SUPERVISED)]
    assert any(e.step == "blast_radius" and "4 dependents, more than" in e.detail for e in world.audit)


async def test_the_briefing_of_an_unapproved_wide_restart_lists_the_dependents(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = graph_world(tmp_path, dependents=WIDE)
    handle, worker = await start_gateway_run(env, world)
    async with worker:
        result = await handle.result()
    assert result.outcome == Outcome.ESCALATED and "nobody approved" in result.reason
    assert world.called("k8s.restart_deployment") == []
    assert len(world.briefings) == 1 and world.briefings[0].dependents == WIDE


async def test_a_restart_within_the_dependents_cap_runs_without_approval(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world = graph_world(tmp_path, dependents=WIDE[:2])
    handle, worker = await start_gateway_run(env, world)
    async with worker:
        result = await handle.result()
    assert result.outcome == Outcome.RESOLVED, result.reason
    assert [(a.type, a.mode) for a in result.actions] == [("k8s.restart", Mode.AUTONOMOUS)]


async def _step(handle: WorkflowHandle, step: str) -> Any:
    for _ in range(400):
        status = await handle.query(ReliabilityLoop.status)
        if status.step == step:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"the run never reached {step}")

"""The reliability drills: real alerts from real Prometheus through real Alertmanager.

Each drill deploys its own service into the estate, with a rollout history and
versions that behave differently, and lets the signal flow: exporter → Prometheus
rule → Alertmanager → ingress → ReliabilityLoop → Kubernetes emulator → estate →
exporter. Then it checks what a user would check: which version runs now, how
many replicas, which briefing reached the on-call channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

from sandbox.drill import DRILLS, DrillResult, drill
from sandbox.model import Behaviour, ServiceSpec
from sandbox.results import drill_result
from sandbox.stack import Stack
from suture.models import ApprovalAnswer, ApprovalDecision, LoopResult
from workers.approvals import decide

NAMESPACE = "shop"
GOOD = Behaviour(latency_p99_s=0.12)
SLOW = Behaviour(latency_p99_s=0.9)
LEAKY = Behaviour(latency_p99_s=0.12, memory_growth_bytes_per_s=3e6)
RUN_TIMEOUT_S = 120.0


def image(service: str, version: str) -> str:
    return f"registry.example/{service}:{version}"


async def result_of(stack: Stack, alertname: str, service: str) -> LoopResult:
    handle = await stack.run_for(alertname, NAMESPACE, service)
    return await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)


@drill(
    "bad-deploy-latency",
    "reliability",
    "resolved",
    "a new version slows checkout down; rolled back, verified",
)
async def bad_deploy_latency(stack: Stack, service: str = "checkout") -> DrillResult:
    v1, v2 = image(service, "v1"), image(service, "v2")
    await stack.add_service(ServiceSpec(NAMESPACE, service, {v1: GOOD, v2: SLOW}, [v1, v2]))
    run = await result_of(stack, "SandboxHighLatency", service)
    checks = {
        "one autonomous rollback": [(a.type, a.mode) for a in run.actions]
        == [("k8s.rollback", "autonomous")],
        "the previous version runs again": await settled(
            lambda: stack.estate.current_image(NAMESPACE, service) == v1
        ),
        "no briefing was needed": stack.escalations.for_run(run.workflow_id) == [],
    }
    return drill_result(DRILLS["bad-deploy-latency"], run, checks)


@drill(
    "memory-leak-restart", "reliability", "resolved", "memory grows with pod age; a rolling restart, verified"
)
async def memory_leak_restart(stack: Stack, service: str = "cart") -> DrillResult:
    v1 = image(service, "v1")
    await stack.add_service(
        ServiceSpec(NAMESPACE, service, {v1: LEAKY}, [v1]), rolled_out_ago=timedelta(minutes=10)
    )
    run = await result_of(stack, "SandboxMemoryLeak", service)
    observed = stack.estate.observe(NAMESPACE, service)
    checks = {
        "one restart": [a.type for a in run.actions] == ["k8s.restart"],
        "same version still runs": stack.estate.current_image(NAMESPACE, service) == v1,
        "memory is back under the limit": observed is not None and observed.memory_bytes < 1.5e9,
    }
    return drill_result(DRILLS["memory-leak-restart"], run, checks)


@drill(
    "rollback-does-not-help",
    "reliability",
    "escalated",
    "a failing dependency, not the new version; the rollback is undone and a human briefed",
)
async def rollback_does_not_help(stack: Stack, service: str = "payments") -> DrillResult:
    v1, v2 = image(service, "v1"), image(service, "v2")
    spec = ServiceSpec(NAMESPACE, service, {v1: GOOD, v2: GOOD}, [v1, v2], dependency_healthy=False)
    await stack.add_service(spec)
    run = await result_of(stack, "SandboxHighLatency", service)
    briefings = stack.escalations.for_run(run.workflow_id)
    checks = {
        "exactly one rollback, compensated": [(a.type, a.compensated) for a in run.actions]
        == [("k8s.rollback", True)],
        "the newer version is back": await settled(
            lambda: stack.estate.current_image(NAMESPACE, service) == v2
        ),
        "a briefing reached the on-call channel": len(briefings) == 1,
        "the briefing lists the recent rollout": bool(briefings and briefings[0]["recent_changes"]),
    }
    return drill_result(DRILLS["rollback-does-not-help"], run, checks)


@drill("novel-alert", "reliability", "escalated", "an alert no policy knows; a briefing, no action")
async def novel_alert(stack: Stack, service: str = "ledger") -> DrillResult:
    v1 = image(service, "v1")
    await stack.add_service(
        ServiceSpec(NAMESPACE, service, {v1: GOOD}, [v1]), extra=lambda: {"sandbox_disk_inode_ratio": 0.97}
    )
    run = await result_of(stack, "SandboxDiskPressureNovel", service)
    briefings = stack.escalations.for_run(run.workflow_id)
    checks = {
        "no action": run.actions == [],
        "a briefing says no policy matched": bool(
            briefings and "no policy matches" in briefings[0]["reason"]
        ),
    }
    return drill_result(DRILLS["novel-alert"], run, checks)


async def saturated_service(
    stack: Stack, service: str, approver: str | None
) -> tuple[LoopResult, dict[str, bool]]:
    """A supervised scale-out; ``approver`` answers the approval, or nobody does."""
    v1 = image(service, "v1")
    await stack.add_service(ServiceSpec(NAMESPACE, service, {v1: GOOD}, [v1], replicas=2, load_rps=100.0))
    handle = await stack.run_for("SandboxSaturation", NAMESPACE, service)
    if approver is not None:
        await _until_pending(stack, handle.id)
        await decide(
            stack.client, handle.id, ApprovalAnswer.APPROVE, ApprovalDecision(approver=approver, note="drill")
        )
    run = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)
    replicas = stack.estate.replicas(NAMESPACE, service)
    checks = {"waited for a human": any(a.mode == "supervised" for a in run.actions) or run.actions == []}
    if approver is None:
        checks["nothing scaled"] = run.actions == [] and replicas == 2
        checks["the timeout is in the briefing"] = bool(
            stack.escalations.for_run(run.workflow_id)
            and "nobody approved" in stack.escalations.for_run(run.workflow_id)[0]["reason"]
        )
    else:
        checks["scaled out by two"] = await settled(lambda: stack.estate.replicas(NAMESPACE, service) == 4)
    return run, checks


@drill(
    "approval-timeout",
    "reliability",
    "escalated",
    "a supervised scale-out nobody approves; escalated on timeout",
)
async def approval_timeout(stack: Stack, service: str = "search") -> DrillResult:
    run, checks = await saturated_service(stack, service, approver=None)
    return drill_result(DRILLS["approval-timeout"], run, checks)


@drill(
    "stale-metrics",
    "reliability",
    "escalated",
    "the exporter dies after the rollback; verdict unknown, no repeat",
)
async def stale_metrics(stack: Stack, service: str = "inventory") -> DrillResult:
    v1, v2 = image(service, "v1"), image(service, "v2")
    await stack.add_service(ServiceSpec(NAMESPACE, service, {v1: GOOD, v2: SLOW}, [v1, v2]))
    handle = await stack.run_for("SandboxHighLatency", NAMESPACE, service)
    await _until(lambda: stack.estate.current_image(NAMESPACE, service) == v1, "the rollback")
    stack.exporter(NAMESPACE, service).stop()
    run = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)
    checks = {
        "verdict unknown": run.verdict == "unknown",
        "the rollback ran once and stays": [(a.type, a.compensated) for a in run.actions]
        == [("k8s.rollback", False)],
        "the undo is left to a human": len(run.undo) == 1,
    }
    return drill_result(DRILLS["stale-metrics"], run, checks)


async def settled(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Whether ``condition`` holds once the estate's controller has caught up (a pass is 0.2 s)."""
    try:
        await _until(condition, "the estate to settle", timeout_s)
    except TimeoutError:
        return False
    return True


async def _until(condition, what: str, timeout_s: float = RUN_TIMEOUT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f}s for {what}")
        await asyncio.sleep(0.1)


async def _until_pending(stack: Stack, workflow_id: str) -> None:
    handle = stack.client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = await handle.query("status")
        if status["pending_approval"] if isinstance(status, dict) else status.pending_approval:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{workflow_id} never asked for approval")

"""The reliability drills end to end: real Prometheus, Alertmanager, Temporal, kmock.

They run concurrently on one stack (each on its own service), once per session;
each test then checks one drill against the contract's expectations.
"""

from __future__ import annotations

import json

import pytest

from sandbox.drill import DrillResult
from suture.models import LoopResult

pytestmark = [pytest.mark.drill, pytest.mark.asyncio(loop_scope="session")]


def outcome(results: tuple[dict[str, DrillResult], LoopResult], name: str) -> DrillResult:
    result = results[0][name]
    assert result.passed, json.dumps(result.model_dump(mode="json"), indent=1)
    return result


async def test_a_bad_deploy_is_rolled_back_autonomously_and_verified(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "bad-deploy-latency")
    assert result.outcome == "resolved" and result.verified and not result.human_touched
    assert [(a.type, a.mode, a.compensated) for a in result.actions] == [
        ("k8s.rollback", "autonomous", False)
    ]
    assert result.mttr_s is not None and result.mttr_s > 0


async def test_a_memory_leak_is_fixed_by_a_verified_restart(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "memory-leak-restart")
    assert result.outcome == "resolved" and result.verified
    assert [a.type for a in result.actions] == ["k8s.restart"]


async def test_a_rollback_that_does_not_help_is_undone_and_escalated(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "rollback-does-not-help")
    assert result.outcome == "escalated" and not result.verified
    assert [(a.type, a.compensated) for a in result.actions] == [("k8s.rollback", True)]
    assert result.checks["the newer version is back"]


async def test_a_novel_alert_reaches_a_human_without_action(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "novel-alert")
    assert result.outcome == "escalated" and result.actions == []


async def test_nobody_approving_escalates_after_the_timeout(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "approval-timeout")
    assert result.outcome == "escalated" and result.actions == []


async def test_an_approved_scale_out_is_carried_out_and_verified(reliability) -> None:  # type: ignore[no-untyped-def]
    approved: LoopResult = reliability[1]
    assert approved.outcome == "resolved", approved.reason
    assert approved.human_touched and approved.approver == "oncall-alice"
    assert [(a.type, a.mode) for a in approved.actions] == [("k8s.scale", "supervised")]


async def test_stale_metrics_escalate_with_verdict_unknown_and_no_repeat(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "stale-metrics")
    assert result.outcome == "escalated" and not result.verified
    assert [(a.type, a.compensated) for a in result.actions] == [("k8s.rollback", False)]

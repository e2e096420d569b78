"""An alert's labels reach the verification query quoted, or the run stops before acting."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from suture.models import HealthCheck, Outcome
from tests.workflow.test_reliability_loop import alert, run_to_end, world_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

INJECTION = 'x"} * 0 or absent_x{a="'


async def test_a_quote_in_a_label_stays_inside_the_verification_query(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    notice = alert()
    notice.labels["service"] = INJECTION
    world = world_for(tmp_path)
    await run_to_end(env, world, notice)
    (check,) = world.called("prometheus.check_health")
    assert isinstance(check, HealthCheck)
    assert check.query == 'latency{service="x\\"} * 0 or absent_x{a=\\""}'


async def test_a_label_with_a_newline_escalates_before_any_action(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    notice = alert()
    notice.labels["service"] = INJECTION + "\n"
    world = world_for(tmp_path)
    result = await run_to_end(env, world, notice)
    assert result.outcome == Outcome.ESCALATED
    assert result.actions == []
    assert world.called("k8s.rollback_deployment") == []
    assert world.called("prometheus.check_health") == []
    assert "label 'service' cannot be used in a PromQL query" in world.briefings[0].reason

"""After a drill, the embedded worker's metrics endpoint shows the run, its action and the SDK.

This is what `curl` on the worker metrics URL that `suture up` prints shows once a
run has been through: scraped over HTTP from the running stack, as Prometheus would.
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.drill import DrillResult
from sandbox.stack import Stack
from suture.models import LoopResult

pytestmark = [pytest.mark.drill, pytest.mark.asyncio(loop_scope="session")]


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_resolved_drill_shows_up_in_the_workers_run_action_and_mttr_metrics(
    stack: Stack, reliability: tuple[dict[str, DrillResult], LoopResult]
) -> None:
    assert stack.metrics_url is not None
    assert ("worker metrics", stack.metrics_url) in stack.addresses()
    assert reliability[0]["bad-deploy-latency"].passed, reliability[0]["bad-deploy-latency"].detail
    found = samples(stack.metrics_url)
    resolved = frozenset({("loop", "reliability"), ("outcome", "resolved")})
    assert found[("suture_runs_closed_total", resolved)] >= 1
    assert found[("suture_runs_started_total", frozenset({("loop", "reliability")}))] >= 1
    rollback = frozenset({("type", "k8s.rollback"), ("result", "applied")})
    assert found[("suture_actions_total", rollback)] >= 1
    assert found[("suture_mttr_seconds_count", frozenset({("loop", "reliability")}))] >= 1
    assert found[("suture_audit_chain_head_seq", frozenset())] > 0
    assert any(name.startswith("temporal_") for name, _ in found), "the SDK's worker metrics"

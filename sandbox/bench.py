"""Benchmarks on the embedded stack. Figures, never assertions: tests assert behaviour.

``latency``: webhook received → first action activity started, over many alerts
posted to the real ingress at a fixed rate, each for its own Deployment; then the
reliability drills on the same stack for their MTTRs.
``containment`` (``sandbox.bench_containment``): audit event received → credential
disabled, one leaked key per event.

On a 2-core machine the whole embedded stack (Temporal dev server, Prometheus,
moto, worker, ingress) sustains a few new runs per second; the default rate of
2/s measures suture's own path rather than queueing.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx

from sandbox.bench_containment import containment, nearest_rank
from sandbox.stack import SANDBOX_POLICIES, Stack
from suture.models import LoopResult

BENCH_POLICIES = Path(__file__).parent / "bench_policies"
Progress = Callable[[str], Any] | None


def alert_payload(index: int, fingerprint: str) -> dict[str, Any]:
    labels = {
        "alertname": "SutureBench",
        "namespace": "bench",
        "deployment": f"bench-{index}",
        "service": f"bench-{index}",
    }
    return {
        "version": "4",
        "groupKey": f"bench-{index}",
        "status": "firing",
        "receiver": "suture",
        "groupLabels": {"alertname": "SutureBench"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "benchmark alert"},
                "startsAt": datetime.now(UTC).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": fingerprint,
            }
        ],
    }


async def _create_deployments(stack: Stack, count: int) -> None:
    from kubernetes.client import AppsV1Api

    apps = AppsV1Api(stack.kube_api)

    def create(index: int) -> None:
        name = f"bench-{index}"
        body: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": f"registry.example/{name}:v1"}]},
                },
            },
        }
        apps.create_namespaced_deployment("bench", cast(Any, body))

    for index in range(count):
        await asyncio.to_thread(create, index)


async def _latency(stack: Stack, count: int, rate: float, say: Callable[[str], Any]) -> dict[str, Any]:
    await _create_deployments(stack, count)
    say(f"posting {count} alerts at {rate:g}/s")
    fingerprints = [uuid.uuid4().hex[:16] for _ in range(count)]
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=stack.ingress_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {stack.token}"}

        async def post(index: int) -> None:
            response = await http.post(
                "/alerts/alertmanager", json=alert_payload(index, fingerprints[index]), headers=headers
            )
            statuses.append(response.status_code)

        posts = []
        started = time.monotonic()
        for index in range(count):
            posts.append(asyncio.create_task(post(index)))
            await asyncio.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))
        await asyncio.gather(*posts)
    say("waiting for every run to close")
    results = await asyncio.gather(*(_result_for(stack, fingerprint) for fingerprint in fingerprints))
    latencies = [
        (result.actions[0].started_at - result.timeline.detected).total_seconds()
        for result in results
        if result.actions and result.actions[0].started_at and result.timeline.detected
    ]
    return {
        "benchmark": "latency",
        "measures": "webhook received -> first action activity started",
        "alerts": count,
        "rate_per_s": rate,
        "accepted_2xx": sum(200 <= status < 300 for status in statuses),
        "runs_with_action": len(latencies),
        "p50_s": round(nearest_rank(latencies, 0.50), 4) if latencies else None,
        "p99_s": round(nearest_rank(latencies, 0.99), 4) if latencies else None,
        "max_s": round(max(latencies), 4) if latencies else None,
        "mean_s": round(statistics.fmean(latencies), 4) if latencies else None,
    }


async def _result_for(stack: Stack, fingerprint: str) -> LoopResult:
    async for execution in stack.client.list_workflows(
        f"WorkflowId STARTS_WITH 'reliability-{fingerprint}-'"
    ):
        handle = stack.client.get_workflow_handle(execution.id, result_type=LoopResult)
        return await asyncio.wait_for(handle.result(), 300)
    await asyncio.sleep(0.5)
    return await _result_for(stack, fingerprint)


async def latency(count: int, rate: float, progress: Progress = None) -> dict[str, Any]:
    from sandbox.runner import all_drills, run_on

    say = progress or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="suture-bench-") as state_dir:
        say("starting the embedded stack")
        async with Stack(
            Path(state_dir), sandbox=True, policy_dirs=[SANDBOX_POLICIES, BENCH_POLICIES]
        ) as stack:
            figures = await _latency(stack, count, rate, say)
            say("running the reliability drills for their MTTR")
            drills = [drill for drill in all_drills().values() if drill.loop == "reliability"]
            report = await run_on(stack, drills, say)
    figures["drill_mttr_s"] = {
        result.scenario: result.mttr_s for result in report.drills if result.mttr_s is not None
    }
    figures["drills_passed"] = report.passed
    return figures


BENCHMARKS: dict[str, Callable[..., Any]] = {"latency": latency, "containment": containment}

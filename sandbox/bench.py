"""Benchmarks on the bench stack. Figures, never assertions: tests assert behaviour.

``latency``: webhook received → first action activity started, over many alerts
posted to the real ingress at a fixed rate, each for its own Deployment; then the
reliability drills on the same stack for their MTTRs.
``containment`` (:mod:`sandbox.bench_containment`): audit event received → credential
disabled, one leaked key per event, at a fixed rate.
``burst`` and ``scale-out`` (:mod:`sandbox.bench_burst`): N audit events at once →
each credential disabled, with one worker or more.
``storm`` (:mod:`sandbox.bench_storm`): one payload of 5,000 alerts and its re-send.
``open-runs`` (:mod:`sandbox.bench_open_runs`): 5,000 runs waiting for approval.

Every benchmark runs on :class:`sandbox.bench_stack.BenchStack`, whose estate (moto,
the Kubernetes emulator) runs in processes of its own, and reports the peak RSS of
the suture process and of the Temporal server during its measured phase.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sandbox.bench_burst import burst, scale_out
from sandbox.bench_containment import containment, repeats, summary
from sandbox.bench_figures import sampled_round_trips
from sandbox.bench_open_runs import open_runs
from sandbox.bench_stack import BENCH_POLICIES, BenchStack, create_deployments
from sandbox.bench_storm import storm
from sandbox.bench_sweep import sweep
from sandbox.stack import SANDBOX_POLICIES
from suture.models import LoopResult

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


async def _latency(stack: BenchStack, count: int, rate: float, say: Callable[[str], Any]) -> dict[str, Any]:
    with ThreadPoolExecutor(4) as pool:
        await create_deployments(stack, range(count), pool=pool)
    say(f"posting {count} alerts at {rate:g}/s")
    sampler = stack.sampler().start()
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
        posted_s = time.monotonic() - started
    say("waiting for every run to close")
    results = await asyncio.gather(*(_result_for(stack, fingerprint) for fingerprint in fingerprints))
    peaks = sampler.stop()
    posting_s = time.monotonic() - started
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
        "achieved_rate_per_s": round(count / posted_s, 2) if posted_s else None,
        "accepted_2xx": sum(200 <= status < 300 for status in statuses),
        "runs": len(results),
        "runs_with_action": len(latencies),
        "actions": sum(len(result.actions) for result in results),
        "duplicate_actions": repeats(str(a.target) for result in results for a in result.actions),
        "lost": count - len(latencies),
        **summary(latencies),
        "peak_rss_mib": peaks,
        "cpu_s": sampler.cpu_s,
        "measured_s": round(posting_s, 1),
        "round_trips_per_run": await sampled_round_trips(
            stack.client, "WorkflowType = 'ReliabilityLoop' AND WorkflowId STARTS_WITH 'reliability-'"
        ),
    }


async def _result_for(stack: BenchStack, fingerprint: str) -> LoopResult:
    async for execution in stack.client.list_workflows(
        f"WorkflowId STARTS_WITH 'reliability-{fingerprint}-'"
    ):
        handle = stack.client.get_workflow_handle(execution.id, result_type=LoopResult)
        return await asyncio.wait_for(handle.result(), 300)
    await asyncio.sleep(0.5)
    return await _result_for(stack, fingerprint)


async def latency(count: int = 200, rate: float = 2.0, progress: Progress = None) -> dict[str, Any]:
    """Run the latency benchmark, then the reliability drills for their MTTR, on a fresh bench stack."""
    from sandbox.runner import all_drills, run_on

    say = progress or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="suture-bench-") as state_dir:
        say("starting the bench stack (moto and the Kubernetes emulator in their own processes)")
        async with BenchStack(
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


BENCHMARKS: dict[str, Callable[..., Any]] = {
    "latency": latency,
    "containment": containment,
    "burst": burst,
    "storm": storm,
    "open-runs": open_runs,
    "scale-out": scale_out,
    "sweep": sweep,
}

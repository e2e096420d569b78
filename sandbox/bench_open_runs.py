"""The ``open-runs`` benchmark: thousands of supervised runs waiting for approval, then all approved.

A quiet night leaves runs waiting for a human until morning. Each waits on a
durable timer and a signal, and costs the server its history and the worker its
cached workflow, so the figure that matters overnight is memory: the RSS of the
suture process (worker and ingress) and of the Temporal server while every run
waits. In the morning all are approved at once, and the figure is the time until
the last one has acted, verified and closed.

Every alert names its own Deployment, created before the clock starts, and the
policy (``bench_policies/open_runs.yaml``) scales it out by one after approval.
Runs are counted as waiting from the audit store (one ``awaiting_approval``
entry each), which the worker writes as a run starts to wait.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sandbox.bench_containment import repeats, summary
from sandbox.bench_figures import results, sampled_round_trips
from sandbox.bench_stack import (
    BENCH_POLICIES,
    BenchStack,
    RssSampler,
    create_deployments,
    on_fresh_bench_stack,
)
from sandbox.stack import SANDBOX_POLICIES
from suture.models import ApprovalDecision, LoopResult

ALERTNAME = "SutureWaiting"
APPROVER = "bench-approver"
NAMESPACE = "waiting"
ALERTS_PER_POST = 100
"""Alerts per webhook: Alertmanager groups them, and a group this size takes the direct path."""
POSTS_AT_ONCE = 4
SIGNALS_AT_ONCE = 64
WAIT_TIMEOUT_S = 1800.0
SETTLE_S = 10.0
"""How long RSS is sampled once every run waits."""
Progress = Callable[[str], Any] | None


# --- pure helpers -----------------------------------------------------------------------------


def waiting_payload(indices: range, tag: str, starts_at: datetime) -> dict[str, Any]:
    """An Alertmanager webhook with one ``SutureWaiting`` alert per index, each for its own Deployment."""
    alerts = [
        {
            "status": "firing",
            "labels": _labels(index),
            "annotations": {"summary": "waiting for a human"},
            "startsAt": starts_at.isoformat(),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": f"{tag}-{index:05d}",
        }
        for index in indices
    ]
    return {
        "version": "4",
        "groupKey": f"{tag}-{indices.start}",
        "status": "firing",
        "receiver": "suture",
        "groupLabels": {"alertname": ALERTNAME},
        "commonLabels": {"alertname": ALERTNAME, "namespace": NAMESPACE},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }


def _labels(index: int) -> dict[str, str]:
    name = deployment_name(index)
    return {"alertname": ALERTNAME, "namespace": NAMESPACE, "deployment": name, "service": name}


def deployment_name(index: int) -> str:
    return f"wait-{index:05d}"


def batches(count: int, size: int) -> list[range]:
    """``range(count)`` cut into consecutive ranges of at most ``size``."""
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


# --- the benchmark ----------------------------------------------------------------------------


def _waiting(db: Path, tag: str) -> int:
    """Runs of this benchmark that have written their ``awaiting_approval`` entry."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        row = connection.execute(
            "SELECT COUNT(DISTINCT workflow_id) FROM audit_events WHERE step = 'awaiting_approval' "
            "AND workflow_id LIKE ?",
            (f"reliability-{tag}-%",),
        ).fetchone()
    return int(row[0])


async def _until_waiting(stack: BenchStack, tag: str, count: int, since: float) -> float | None:
    db = stack.state_dir / "suture.db"
    while time.monotonic() - since < WAIT_TIMEOUT_S:
        if await asyncio.to_thread(_waiting, db, tag) >= count:
            return time.monotonic() - since
        await asyncio.sleep(2.0)
    return None


async def _post_all(stack: BenchStack, count: int, tag: str) -> list[int]:
    starts_at = datetime.now(UTC)
    gate = asyncio.Semaphore(POSTS_AT_ONCE)
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.ingress_url, timeout=300) as http:

        async def post(indices: range) -> int:
            async with gate:
                response = await http.post(
                    "/alerts/alertmanager", json=waiting_payload(indices, tag, starts_at), headers=headers
                )
                return response.status_code

        return list(await asyncio.gather(*(post(indices) for indices in batches(count, ALERTS_PER_POST))))


async def _approve_all(stack: BenchStack, workflow_ids: list[str]) -> None:
    gate = asyncio.Semaphore(SIGNALS_AT_ONCE)
    decision = ApprovalDecision(approver=APPROVER, note="approved in the morning")

    async def approve(workflow_id: str) -> None:
        async with gate:
            await stack.client.get_workflow_handle(workflow_id).signal("approve", decision)

    await asyncio.gather(*(approve(workflow_id) for workflow_id in workflow_ids))


async def _open_runs(stack: BenchStack, count: int, say: Callable[[str], Any]) -> dict[str, Any]:
    tag = f"wait{uuid.uuid4().hex[:6]}"
    say(f"creating {count} Deployments")
    with ThreadPoolExecutor(4) as pool:
        await create_deployments(stack, range(count), NAMESPACE, deployment_name, pool)
    sampler = stack.sampler().start()
    say(f"posting {count} alerts whose runs wait for approval")
    started = time.monotonic()
    statuses = await _post_all(stack, count, tag)
    waiting_s = await _until_waiting(stack, tag, count, started)
    say(f"{count} runs waiting after {waiting_s}s; sampling RSS for {SETTLE_S:.0f}s")
    at_rest = RssSampler(sampler.pids).start()
    await asyncio.sleep(SETTLE_S)
    waiting_rss = at_rest.stop()
    workflow_ids = [
        execution.id
        async for execution in stack.client.list_workflows(
            f"WorkflowType = 'ReliabilityLoop' AND WorkflowId STARTS_WITH 'reliability-{tag}-'"
        )
    ]
    say(f"approving {len(workflow_ids)} runs at once")
    approving = time.monotonic()
    await _approve_all(stack, workflow_ids)
    signals_s = time.monotonic() - approving
    closed = await results(stack.client, sorted(set(workflow_ids)), LoopResult)
    drain_s = time.monotonic() - approving
    peaks = sampler.stop()
    acted = [
        str(action.target) for result in closed for action in result.actions if action.started_at is not None
    ]
    closing = [
        (r.timeline.closed - r.timeline.approved).total_seconds()
        for r in closed
        if r.timeline.closed and r.timeline.approved
    ]
    return {
        "benchmark": "open-runs",
        "measures": "N runs waiting for approval: RSS while they wait; all approved -> seconds to drain",
        "runs_requested": count,
        "posts_2xx": sum(200 <= status < 300 for status in statuses),
        "runs": len(set(workflow_ids)),
        "duplicate_runs": len(workflow_ids) - len(set(workflow_ids)),
        "lost": count - len(set(workflow_ids)),
        "all_waiting_s": round(waiting_s, 1) if waiting_s else None,
        "waiting_rss_mib": waiting_rss,
        "approval_signals_s": round(signals_s, 2),
        "drain_s": round(drain_s, 2),
        "achieved_rate_per_s": round(len(closed) / drain_s, 1) if drain_s else None,
        "approved_to_closed": summary(closing),
        "outcomes": dict(Counter(str(result.outcome) for result in closed)),
        "actions": len(acted),
        "duplicate_actions": repeats(acted),
        "peak_rss_mib": peaks,
        "cpu_s": sampler.cpu_s,
        "round_trips_per_run": await sampled_round_trips(
            stack.client, f"WorkflowType = 'ReliabilityLoop' AND WorkflowId STARTS_WITH 'reliability-{tag}-'"
        ),
    }


async def open_runs(count: int = 5000, progress: Progress = None) -> dict[str, Any]:
    """Run the open-runs benchmark on a fresh bench stack."""
    return await on_fresh_bench_stack(
        lambda stack, say: _open_runs(stack, count, say), progress, [SANDBOX_POLICIES, BENCH_POLICIES]
    )

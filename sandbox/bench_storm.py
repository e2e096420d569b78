"""The ``storm`` benchmark: one Alertmanager payload of 5,000 firing alerts, then the same payload again.

A broken shared dependency fires an alert for every service behind it, and
Alertmanager sends them as one group: one POST with thousands of alerts. It
retries the whole group on a 5xx, and re-sends it on its next group interval,
so the benchmark posts the payload, follows ``Retry-After`` on a 503 as
Alertmanager would retry, and posts it once more. Every alert names its own
service, so every alert is its own run; the policy only observes, so the figure
is the ingress taking the storm in, not 5,000 actions; each service has its
Deployment, so each run reads a real rollout history before it records what it
would have done.

Measured: seconds until the first 2xx, every answer's status (no 5xx is the
goal), seconds until every run exists in Temporal, runs started per alert
(exactly once: ``duplicate_runs`` and ``lost`` both 0), and the RSS of the suture
process and of the Temporal server. Then, as a throughput figure, seconds until
every run has closed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx

from sandbox.bench_figures import sampled_round_trips
from sandbox.bench_stack import BENCH_POLICIES, BenchStack, create_deployments, on_fresh_bench_stack
from sandbox.stack import SANDBOX_POLICIES

ALERTNAME = "SutureStorm"
RETRIES = 5
"""Retries of a payload answered 5xx, as Alertmanager's notifier would make."""
RUNS_TIMEOUT_S = 900.0
Progress = Callable[[str], Any] | None


# --- pure helpers -----------------------------------------------------------------------------


def storm_payload(count: int, tag: str, starts_at: datetime) -> dict[str, Any]:
    """One Alertmanager webhook (v4) with ``count`` firing alerts, each for its own service."""
    alerts = []
    for index in range(count):
        labels = {
            "alertname": ALERTNAME,
            "namespace": "storm",
            "service": service_name(index),
            "deployment": service_name(index),
        }
        alerts.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "a shared dependency is down"},
                "startsAt": starts_at.isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": f"{tag}-{index:05d}",
            }
        )
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{ALERTNAME}"}}',
        "status": "firing",
        "receiver": "suture",
        "groupLabels": {"alertname": ALERTNAME},
        "commonLabels": {"alertname": ALERTNAME, "namespace": "storm"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }


def service_name(index: int) -> str:
    return f"svc-{index:05d}"


def status_counts(statuses: list[int]) -> dict[str, int]:
    """Answers by class: ``2xx``, ``4xx``, ``5xx``, and ``none`` for a request that got no answer."""
    counted = Counter("none" if status == 0 else f"{status // 100}xx" for status in statuses)
    return dict(sorted(counted.items()))


# --- the benchmark ----------------------------------------------------------------------------


async def post_as_alertmanager(
    http: httpx.AsyncClient, payload: dict[str, Any], headers: dict[str, str], retries: int = RETRIES
) -> list[tuple[int, float]]:
    """POST ``payload`` until a non-5xx answer or ``retries`` retries; each attempt's status and seconds."""
    attempts: list[tuple[int, float]] = []
    for _ in range(retries + 1):
        started = time.monotonic()
        try:
            response = await http.post("/alerts/alertmanager", json=payload, headers=headers)
            status, wait = response.status_code, float(response.headers.get("Retry-After", "5"))
        except httpx.HTTPError:
            status, wait = 0, 5.0
        attempts.append((status, time.monotonic() - started))
        if 0 < status < 500:
            break
        await asyncio.sleep(wait)
    return attempts


async def _count_runs(stack: BenchStack, tag: str, closed: bool = False) -> int:
    query = f"WorkflowType = 'ReliabilityLoop' AND WorkflowId STARTS_WITH 'reliability-{tag}-'"
    if closed:
        query += " AND ExecutionStatus != 'Running'"
    return (await stack.client.count_workflows(query)).count


async def _until_runs(
    stack: BenchStack, tag: str, count: int, closed: bool, since: float, timeout_s: float = RUNS_TIMEOUT_S
) -> float | None:
    """Seconds from ``since`` (monotonic) until ``count`` runs of the storm exist (or have closed)."""
    while time.monotonic() - since < timeout_s:
        if await _count_runs(stack, tag, closed) >= count:
            return time.monotonic() - since
        await asyncio.sleep(0.5)
    return None


async def _distinct_runs(stack: BenchStack, tag: str) -> tuple[int, int]:
    """(executions, distinct workflow IDs) of the storm's runs."""
    ids = [
        execution.id
        async for execution in stack.client.list_workflows(
            f"WorkflowType = 'ReliabilityLoop' AND WorkflowId STARTS_WITH 'reliability-{tag}-'"
        )
    ]
    return len(ids), len(set(ids))


async def _storm(stack: BenchStack, count: int, say: Callable[[str], Any]) -> dict[str, Any]:
    tag = f"storm{uuid.uuid4().hex[:6]}"
    say(f"creating {count} Deployments for the storm's runs to read")
    with ThreadPoolExecutor(4) as pool:
        await create_deployments(stack, range(count), "storm", service_name, pool)
    payload = storm_payload(count, tag, datetime.now(UTC))
    headers = {"Authorization": f"Bearer {stack.token}"}
    sampler = stack.sampler().start()
    async with httpx.AsyncClient(base_url=stack.ingress_url, timeout=300) as http:
        say(f"posting one payload of {count} firing alerts")
        started = time.monotonic()
        first = await post_as_alertmanager(http, payload, headers)
        answered_s = time.monotonic() - started
        say(f"answered {first[-1][0]} after {answered_s:.1f}s; re-sending the same payload")
        again = await post_as_alertmanager(http, payload, headers)
    say("waiting until every run exists")
    durable_s = await _until_runs(stack, tag, count, False, started)
    say("waiting until every run has closed")
    closed_s = await _until_runs(stack, tag, count, True, started)
    peaks = sampler.stop()
    executions, distinct = await _distinct_runs(stack, tag)
    statuses = [status for status, _ in first + again]
    return {
        "benchmark": "storm",
        "measures": "one payload of N alerts (and its re-send) -> 2xx with every alert durable",
        "alerts": count,
        "answered_2xx_s": round(answered_s, 2) if 200 <= first[-1][0] < 300 else None,
        "first_attempts": [{"status": s, "seconds": round(t, 2)} for s, t in first],
        "resend_attempts": [{"status": s, "seconds": round(t, 2)} for s, t in again],
        "answers": status_counts(statuses),
        "achieved_rate_per_s": round(count / answered_s, 1) if answered_s else None,
        "all_runs_started_s": round(durable_s, 2) if durable_s else None,
        "all_runs_closed_s": round(closed_s, 2) if closed_s else None,
        "runs": distinct,
        "duplicate_runs": executions - distinct,
        "lost": count - distinct,
        "actions": 0,
        "peak_rss_mib": peaks,
        "cpu_s": sampler.cpu_s,
        "round_trips_per_run": await sampled_round_trips(
            stack.client, f"WorkflowType = 'ReliabilityLoop' AND WorkflowId STARTS_WITH 'reliability-{tag}-'"
        ),
    }


async def storm(count: int = 5000, progress: Progress = None) -> dict[str, Any]:
    """Run the storm benchmark on a fresh bench stack."""
    return await on_fresh_bench_stack(
        lambda stack, say: _storm(stack, count, say), progress, [SANDBOX_POLICIES, BENCH_POLICIES]
    )

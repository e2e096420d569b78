"""The ``burst`` benchmark: N leaked keys' audit events at once → each credential contained.

A bad Terraform apply or a leaked CI secret does not send one event a second: it
sends hundreds at once. The events are those of ``containment`` (one leaked key
per event, each with its routine history; one in twenty delivered twice), but
posted as fast as the ingress takes them, ``CONNECTIONS`` requests at a time.
The figure is the time from the first event's arrival at the ingress to each
key being disabled (``since_first``), and also each event's own (``per_event``).

By default the worker runs in the suture process beside the ingress, as ``suture
up`` runs it. With ``workers`` N, N ``suture worker`` processes serve the task
queue instead, sharing the audit store (a SQLite file here; PostgreSQL in
production) and its audit key, and the suture process only runs the ingress: the
scale-out of a cluster, on one machine (``scale-out`` runs one, then two). Each
worker is the production process, configured only by its environment (see
:func:`sandbox.bench_stack.worker_environment`). With its own client the ingress
starts runs through the server's matching, so no worker is favoured.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from sandbox.aws import MotoSandbox, envelope
from sandbox.bench_containment import (
    DEACTIVATE,
    RUN_TIMEOUT_S,
    _inactive_keys,
    _seed,
    containment_seconds,
    disabled_at,
    duplicated,
    repeats,
    summary,
)
from sandbox.bench_figures import results as bounded_results
from sandbox.bench_figures import sampled_round_trips
from sandbox.bench_stack import BenchStack, on_fresh_bench_stack
from sandbox.stack import SANDBOX_POLICIES
from suture.models import AuditEntry, LoopResult

CONNECTIONS = 64
"""Requests in flight at once: what a sender fanning out a burst keeps open."""
Progress = Callable[[str], Any] | None


# --- pure helpers -----------------------------------------------------------------------------


def since_first(first_arrival: datetime, contained: list[datetime]) -> list[float]:
    """Seconds from the first event's arrival to each containment."""
    return [(moment - first_arrival).total_seconds() for moment in contained]


# --- the benchmark ----------------------------------------------------------------------------


async def post_burst(
    url: str, token: str, events: list[dict[str, Any]], twice: set[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Post every event at once, ``CONNECTIONS`` at a time; first and repeated answers, seconds taken."""
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    first: list[dict[str, Any]] = [{} for _ in events]
    again: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        headers = {"Authorization": f"Bearer {token}"}

        async def deliver(event: dict[str, Any]) -> dict[str, Any]:
            try:
                response = await http.post("/events/aws", json=event, headers=headers)
            except httpx.HTTPError as error:
                return {"status": 0, "error": str(error)}
            answer = response.json().get("delivery", {}) if response.is_success else {}
            return {"status": response.status_code, **answer}

        async def send(index: int) -> None:
            if index not in twice:
                first[index] = await deliver(events[index])
                return
            one, two = await asyncio.gather(deliver(events[index]), deliver(events[index]))
            first[index], repeat = (two, one) if two.get("kind") == "started" else (one, two)
            again.append(repeat)

        started = time.monotonic()
        await asyncio.gather(*(send(index) for index in range(len(events))))
        posting_s = time.monotonic() - started
    return first, again, posting_s


async def _burst(stack: BenchStack, count: int, say: Callable[[str], Any]) -> dict[str, Any]:
    aws: MotoSandbox = stack.aws
    workers = len(stack.workers) or "in the suture process"
    say(f"seeding {count} IAM users, one access key each, with history and a leaked call")
    seeded = await asyncio.to_thread(_seed, aws, count)
    actors = [actor for actor, _ in seeded]
    events = [envelope(leaked) for _, leaked in seeded]
    twice = duplicated(count)
    sampler = stack.sampler().start()
    say(f"posting {count} audit events at once ({len(twice)} of them twice); workers: {workers}")
    first, again, posting_s = await post_burst(stack.ingress_url, stack.token, events, twice)
    accepted = [answer for answer in first if 200 <= answer.get("status", 0) < 300]
    workflow_ids = sorted({answer["workflow_id"] for answer in accepted})
    say(f"waiting for {len(workflow_ids)} runs to close")
    results = await bounded_results(stack.client, workflow_ids, LoopResult, RUN_TIMEOUT_S)
    peaks = sampler.stop()
    entries = await asyncio.to_thread(stack.store.events)
    by_run: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        by_run.setdefault(entry.workflow_id, []).append(entry)
    arrivals = [r.timeline.detected for r in results if r.timeline.detected is not None]
    contained = [at for r in results if (at := disabled_at(by_run.get(r.workflow_id, []))) is not None]
    own = [s for r in results if (s := containment_seconds(r, by_run.get(r.workflow_id, []))) is not None]
    from_first = since_first(min(arrivals), contained) if arrivals else []
    started_runs = (await stack.client.count_workflows("WorkflowType = 'SecurityLoop'")).count
    deactivations = [e.subject for e in entries if e.step == "acted" and e.detail.startswith(DEACTIVATE)]
    inactive = await asyncio.to_thread(_inactive_keys, aws, actors)
    span = max(from_first) if from_first else None
    return {
        "benchmark": "burst",
        "measures": "first audit event received -> each credential disabled",
        "events": count,
        "workers": workers,
        "achieved_rate_per_s": round(count / posting_s, 1) if posting_s else None,
        "accepted_2xx": len(accepted),
        "runs": len(workflow_ids),
        "actions": len(deactivations),
        "runs_contained": len(contained),
        "contained_per_s": round(len(contained) / span, 1) if span else None,
        "keys_inactive_after": inactive,
        "lost": count - inactive,
        "outcomes": dict(Counter(str(result.outcome) for result in results)),
        "duplicates_posted": len(again),
        "duplicate_runs": started_runs - len(workflow_ids),
        "duplicate_actions": repeats(deactivations),
        **summary(from_first),
        "per_event": summary(own),
        "peak_rss_mib": peaks,
        "cpu_s": sampler.cpu_s,
        "round_trips_per_run": await sampled_round_trips(stack.client, "WorkflowType = 'SecurityLoop'"),
    }


async def burst(count: int = 200, workers: int | None = None, progress: Progress = None) -> dict[str, Any]:
    """Run the burst benchmark on a fresh bench stack with the sandbox's security policies.

    Args:
        workers: None runs the worker inside the suture process beside the ingress, as
            ``suture up`` does; N runs N ``suture worker`` processes and only the ingress here.
    """
    return await on_fresh_bench_stack(
        lambda stack, say: _burst(stack, count, say), progress, [SANDBOX_POLICIES], workers or 0
    )


async def scale_out(count: int = 200, progress: Progress = None) -> dict[str, Any]:
    """The burst with one ``suture worker`` process, then two, on fresh stacks: throughput and correctness."""
    one = await burst(count, workers=1, progress=progress)
    two = await burst(count, workers=2, progress=progress)
    return {
        "benchmark": "scale-out",
        "measures": "burst of N audit events with one worker, then two, on one task queue and store",
        "events": count,
        "one_worker": one,
        "two_workers": two,
        "contained_per_s": {"1": one["contained_per_s"], "2": two["contained_per_s"]},
        "p99_s": {"1": one["p99_s"], "2": two["p99_s"]},
        "duplicate_actions": one["duplicate_actions"] + two["duplicate_actions"],
        "lost": one["lost"] + two["lost"],
    }

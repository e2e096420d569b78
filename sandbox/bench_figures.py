"""Figures every benchmark shares: server round trips per run, read back from the runs' histories.

A run costs the Temporal server one round trip per workflow task and per
activity task; a local activity costs none (its result rides on the next
workflow task completion as a marker), and neither does a ``workflow.patched``
marker. The counts come from the histories of a few finished runs, so they are
what the server really did, not what the code suggests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

SAMPLE_RUNS = 5
"""Histories read per benchmark: the loops are deterministic, a few runs show the shape."""
RESULTS_AT_ONCE = 100
"""Results awaited at once: each is a long poll, and the server caps a namespace's concurrent polls."""


def round_trips(event_types: Iterable[str]) -> dict[str, int]:
    """Round trips and in-process steps of one run, from its history's event type names.

    Names may carry the protobuf prefix (``EVENT_TYPE_WORKFLOW_TASK_SCHEDULED``) or not.
    """
    counts = Counter(name.removeprefix("EVENT_TYPE_") for name in event_types)
    return {
        "workflow_tasks": counts["WORKFLOW_TASK_SCHEDULED"],
        "activity_tasks": counts["ACTIVITY_TASK_SCHEDULED"],
        "markers": counts["MARKER_RECORDED"],
        "timers": counts["TIMER_STARTED"],
        "signals": counts["WORKFLOW_EXECUTION_SIGNALED"],
        "events": sum(counts.values()),
    }


def mean_counts(runs: list[dict[str, int]]) -> dict[str, float]:
    """The per-run mean of each count, over ``runs``."""
    if not runs:
        return {}
    return {key: round(sum(run[key] for run in runs) / len(runs), 1) for key in runs[0]}


async def sampled_round_trips(client: Any, query: str, sample: int = SAMPLE_RUNS) -> dict[str, float]:
    """Mean round trips of up to ``sample`` closed runs matching the visibility ``query``."""
    from temporalio.api.enums.v1 import EventType

    runs = []
    async for execution in client.list_workflows(query, limit=sample):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        runs.append(round_trips(EventType.Name(event.event_type) for event in history.events))
    return {"runs_sampled": len(runs), **mean_counts(runs)}


async def results(
    client: Any, workflow_ids: list[str], result_type: Any, timeout_s: float = 1800.0
) -> list[Any]:
    """Every run's result, ``RESULTS_AT_ONCE`` long polls at a time."""
    import asyncio

    gate = asyncio.Semaphore(RESULTS_AT_ONCE)

    async def one(workflow_id: str) -> Any:
        async with gate:
            handle = client.get_workflow_handle(workflow_id, result_type=result_type)
            return await asyncio.wait_for(handle.result(), timeout_s)

    return list(await asyncio.gather(*(one(workflow_id) for workflow_id in workflow_ids)))

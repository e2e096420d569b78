"""The dependency graph's Temporal Schedule: the graph is refreshed on a timer, never per alert.

A storm of alerts must not fan out into a storm of reads against Kubernetes and
Prometheus, so runs read the stored graph and this schedule keeps it current.
``temporal schedule trigger --schedule-id suture-graph-refresh`` (or ``suture
graph --refresh``) refreshes it at once. Overlap policy *skip*: a refresh still
running makes the next one pointless.

=========================  ==========================================
variable                   meaning (default)
=========================  ==========================================
SUTURE_GRAPH_INTERVAL      time between refreshes, e.g. ``5m`` (``5m``)
=========================  ==========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from policies.graph import GraphRefresh, GraphRefreshed
from workers.schedules import ensure_schedule, interval_setting

GRAPH_SCHEDULE_ID = "suture-graph-refresh"
GRAPH_WORKFLOW = "GraphRefresher"
DEFAULT_INTERVAL = timedelta(minutes=5)


def graph_interval(environ: Mapping[str, str] | None = None) -> timedelta:
    """``SUTURE_GRAPH_INTERVAL``: at most one refresh every ten seconds."""
    return interval_setting("SUTURE_GRAPH_INTERVAL", DEFAULT_INTERVAL, timedelta(seconds=10), environ)


def graph_schedule(task_queue: str, interval: timedelta) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            GRAPH_WORKFLOW, GraphRefresh(), id="suture-graph-refresh-run", task_queue=task_queue
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_graph_schedule(client: Client, task_queue: str, interval: timedelta | None = None) -> None:
    """Create the schedule, or bring an existing one up to date; never a second one."""
    schedule = graph_schedule(task_queue, interval or graph_interval())
    if await ensure_schedule(client, GRAPH_SCHEDULE_ID, schedule) == "created":
        await client.get_schedule_handle(GRAPH_SCHEDULE_ID).trigger()


async def refresh_now(client: Client, task_queue: str) -> GraphRefreshed:
    """One refresh outside the schedule, waited for."""
    result: GraphRefreshed = await client.execute_workflow(
        GRAPH_WORKFLOW,
        GraphRefresh(),
        id="suture-graph-refresh-now",
        task_queue=task_queue,
        result_type=GraphRefreshed,
    )
    return result

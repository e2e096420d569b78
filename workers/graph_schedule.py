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

import os
from collections.abc import Mapping
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from policies.durations import parse_duration
from policies.graph import GraphRefresh, GraphRefreshed
from suture.errors import ConfigError

GRAPH_SCHEDULE_ID = "suture-graph-refresh"
GRAPH_WORKFLOW = "GraphRefresher"
DEFAULT_INTERVAL = timedelta(minutes=5)


def graph_interval(environ: Mapping[str, str] | None = None) -> timedelta:
    """``SUTURE_GRAPH_INTERVAL`` as a duration.

    Raises:
        ConfigError: the value is not a duration of at least ten seconds.
    """
    value = (environ if environ is not None else os.environ).get("SUTURE_GRAPH_INTERVAL")
    if not value:
        return DEFAULT_INTERVAL
    try:
        interval = timedelta(seconds=parse_duration(value))
    except ValueError as error:
        raise ConfigError(f"SUTURE_GRAPH_INTERVAL: {error}") from None
    if interval < timedelta(seconds=10):
        raise ConfigError(f"SUTURE_GRAPH_INTERVAL: {value!r} is shorter than 10s")
    return interval


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
    try:
        await client.create_schedule(GRAPH_SCHEDULE_ID, schedule, trigger_immediately=True)
    except ScheduleAlreadyRunningError:

        def update(_current: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(GRAPH_SCHEDULE_ID).update(update)


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

"""The resource sweep's Temporal Schedule: one schedule, created or updated, never duplicated.

Waste is a persistent condition, so the resource loop runs on a Temporal
Schedule rather than a cron: ``temporal schedule list`` and the UI show it and
every sweep it started, ``temporal schedule trigger`` or ``suture sweep --now``
start one by hand, and pausing the resource loop (``suture pause resource``)
pauses the schedule too. Overlap policy *skip*: a sweep still running when the
next is due means the fleet is being evaluated already, and a second one would
only double-count the daily cap. The catch-up window is bounded, so a server
that was down for a day runs one sweep when it comes back, not twenty-four.

=========================  ==========================================
variable                   meaning (default)
=========================  ==========================================
SUTURE_SWEEP_INTERVAL      time between sweeps, e.g. ``1h``, ``30m`` (``1h``)
SUTURE_SWEEP_SCHEDULE      ``off`` to not create the schedule (``on``)
=========================  ==========================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from policies.durations import parse_duration
from suture import search_attributes as sa
from suture.errors import ConfigError
from suture.fleet import SweepInput, SweepResult
from suture.models import Loop

SWEEP_SCHEDULE_ID = "suture-resource-sweep"
SWEEP_WORKFLOW = "ResourceSweep"
DEFAULT_INTERVAL = timedelta(hours=1)
MAX_CATCHUP = timedelta(hours=2)


def interval_setting(
    variable: str, default: timedelta, minimum: timedelta, environ: Mapping[str, str] | None = None
) -> timedelta:
    """A schedule's interval from the environment variable ``variable`` (a duration like ``15m``).

    Raises:
        ConfigError: naming the variable, when the value is not a duration of at least ``minimum``.
    """
    env = os.environ if environ is None else environ
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        interval = timedelta(seconds=parse_duration(raw))
    except ValueError as error:
        raise ConfigError(f"{variable}: {error}") from None
    if interval < minimum:
        least = int(minimum.total_seconds())
        shown = f"{least // 60}m" if least % 60 == 0 else f"{least}s"
        raise ConfigError(f"{variable}: {raw!r} is shorter than {shown} (e.g. 15m, 1h)")
    return interval


def sweep_interval(environ: Mapping[str, str] | None = None) -> timedelta:
    """``SUTURE_SWEEP_INTERVAL``: at most one sweep a minute."""
    return interval_setting("SUTURE_SWEEP_INTERVAL", DEFAULT_INTERVAL, timedelta(minutes=1), environ)


async def ensure_schedule(
    client: Client, schedule_id: str, wanted: Schedule, *, paused: bool | None = None
) -> str:
    """Create schedule ``schedule_id``, or bring an existing one to ``wanted``; never a second one.

    A pause someone set (``suture pause``) is kept unless ``paused`` says otherwise.
    Returns what was done, for the log.
    """
    try:
        await client.create_schedule(schedule_id, wanted)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        state = current.description.schedule.state
        keep = ScheduleState(paused=state.paused if paused is None else paused, note=state.note)
        return ScheduleUpdate(
            schedule=Schedule(action=wanted.action, spec=wanted.spec, policy=wanted.policy, state=keep)
        )

    await client.get_schedule_handle(schedule_id).update(update)
    return "updated"


def schedule_enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("SUTURE_SWEEP_SCHEDULE", "on").strip().lower() not in ("off", "0", "false", "no")


def _attributes() -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.SUTURE_LOOP, str(Loop.RESOURCE)),
            SearchAttributePair(sa.SUTURE_SERVICE, "sweep"),
        ]
    )


def sweep_schedule(task_queue: str, interval: timedelta, *, paused: bool = False, note: str = "") -> Schedule:
    """The schedule that starts one :class:`~workflows.resource.ResourceSweep` per interval."""
    catchup = min(interval, MAX_CATCHUP)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SWEEP_WORKFLOW,
            SweepInput(),
            id="resource-sweep",
            task_queue=task_queue,
            typed_search_attributes=_attributes(),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(catchup, timedelta(minutes=1))
        ),
        state=ScheduleState(paused=paused, note=note or "resource sweep"),
    )


async def ensure_sweep_schedule(
    client: Client, task_queue: str, interval: timedelta | None = None, *, paused: bool | None = None
) -> str:
    """Create the sweep's schedule, or bring an existing one to this interval and task queue.

    A pause set by ``suture pause resource`` is kept unless ``paused`` says otherwise.
    Returns what was done, for the log.
    """
    every = interval or sweep_interval()
    wanted = sweep_schedule(task_queue, every, paused=bool(paused))
    done = await ensure_schedule(client, SWEEP_SCHEDULE_ID, wanted, paused=paused)
    return f"{done} schedule {SWEEP_SCHEDULE_ID} (every {every}, overlap skip)"


async def set_sweep_paused(client: Client, paused: bool, note: str) -> bool:
    """Pause or unpause the sweep's schedule; False when there is no schedule to change."""
    handle = client.get_schedule_handle(SWEEP_SCHEDULE_ID)
    try:
        if paused:
            await handle.pause(note=note)
        else:
            await handle.unpause(note=note)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def start_sweep(
    client: Client, task_queue: str, scope: dict[str, str] | None = None, workflow_id: str | None = None
) -> Any:
    """Start one sweep now, outside the schedule (``suture sweep --now``); returns its handle."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return await client.start_workflow(
        SWEEP_WORKFLOW,
        SweepInput(scope=scope or {}),
        id=workflow_id or f"resource-sweep-now-{stamp}",
        task_queue=task_queue,
        result_type=SweepResult,
        search_attributes=_attributes(),
    )

"""The Temporal worker: every loop's workflows and the activities that reach the world.

Activities are methods of classes that receive their clients here, once, so the
same code runs against a real cluster (``KUBECONFIG``, ``PROMETHEUS_URL``, AWS
credential chain) and against the drill sandbox (clients pointed at loopback).
Blocking clients run on a thread pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from workflows.intake import AlertIntake
from workflows.reliability import ReliabilityLoop
from workflows.resource import ResourceLoop, ResourceSweep
from workflows.security import SecurityLoop
from workflows.storm import GraphRefresher, StormLoop
from workflows.undo import UndoRun

WORKFLOWS: list[type] = [
    ReliabilityLoop,
    SecurityLoop,
    UndoRun,
    ResourceSweep,
    ResourceLoop,
    StormLoop,
    GraphRefresher,
    AlertIntake,
]


@dataclass
class ActivityProviders:
    """Objects whose ``@activity.defn`` methods the worker registers."""

    providers: list[Any] = field(default_factory=list)

    def activities(self) -> list[Any]:
        return [method for provider in self.providers for method in activity_methods(provider)]


def activity_methods(provider: Any) -> list[Any]:
    """The bound activity methods of ``provider``, found by their Temporal definition."""
    found = []
    for name in dir(type(provider)):
        member = getattr(type(provider), name, None)
        if member is not None and hasattr(member, "__temporal_activity_definition"):
            found.append(getattr(provider, name))
    return found


MAX_CACHED_RUNS = 1_000
"""Runs kept in the worker's sticky cache (the SDK's default). Runs waiting for approval beyond this
many are evicted and replayed from their history when a signal wakes them (tens of milliseconds
each). With 10,000 the worker held 917 MiB at 1,639 waiting runs and kept growing; with 1,000 it
stays near 450 MiB however many wait (``suture bench open-runs`` reports the RSS)."""
SHARED_MODULES = ("policies", "suture", "pydantic", "workflows")
"""Modules the workflow sandbox shares with the worker instead of importing them anew per run.

They are pure: no module-level state, no I/O. Without ``workflows`` here every new run (and every
run evicted from the cache) re-imported the loop modules in its sandbox: a burst of 200 runs spent
10% more worker CPU, and replaying one recorded run took 140-170 ms instead of 30-40 ms. The
sandbox's check that workflow code calls nothing non-deterministic still runs where it matters for
correctness: the workflow tests and the replay of every recorded history use the full sandbox."""


def build_worker(
    client: Client,
    task_queue: str,
    providers: Iterable[Any],
    workflows: Sequence[type] | None = None,
    max_concurrent_activities: int = 64,
    max_cached_runs: int = MAX_CACHED_RUNS,
) -> Worker:
    activities = worker_activities(client, providers)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows or all_workflows()),
        activities=activities,
        activity_executor=ThreadPoolExecutor(max_workers=max_concurrent_activities),
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_local_activities=max_concurrent_activities,
        max_cached_workflows=max_cached_runs,
        # Pollers follow the server's backlog: a burst gets more, an idle worker keeps one.
        workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
        activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*SHARED_MODULES)
        ),
    )


def worker_activities(client: Client, providers: Iterable[Any]) -> list[Any]:
    """Every activity the worker registers: the providers' and the one that reads runs back."""
    from activities.runs import RunRecords
    from workers.intake import AlertIntakeActivities

    # Reading finished runs and delivering a storm's alerts need the worker's own client.
    return ActivityProviders([*providers, RunRecords(client), AlertIntakeActivities(client)]).activities()


def all_workflows() -> list[type]:
    return list(WORKFLOWS)

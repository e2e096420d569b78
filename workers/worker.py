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
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

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


def build_worker(
    client: Client,
    task_queue: str,
    providers: Iterable[Any],
    workflows: Sequence[type] | None = None,
    max_concurrent_activities: int = 64,
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
        workflow_runner=SandboxedWorkflowRunner(
            # Pure, already-imported modules are shared with the sandbox instead of being
            # re-imported for every run, which is most of the cost of starting a run.
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "policies", "suture", "pydantic"
            )
        ),
    )


def worker_activities(client: Client, providers: Iterable[Any]) -> list[Any]:
    """Every activity the worker registers: the providers' and the one that reads runs back."""
    from activities.runs import RunRecords

    # Reading finished runs needs the worker's own client, so it is added here.
    return ActivityProviders([*providers, RunRecords(client)]).activities()


def all_workflows() -> list[type]:
    return list(WORKFLOWS)

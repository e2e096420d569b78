"""A worker process the durability and chaos tests can kill: fake activities, a journal on disk.

python -m tests.integration.durability_worker ADDRESS TASK_QUEUE POLICY_FILE JOURNAL [LEDGER_DIR]

The journal gets one line per activity call, so a retried activity shows up as
two calls. With ``LEDGER_DIR`` the worker also keeps, on disk and shared by
every worker process the test starts, what a real estate would remember:

- ``effects``: one line per side effect, keyed by the action's business
  idempotency key, as the real activities key their patches. A retried do or
  undo finds its own line and changes nothing, so the chaos test can tell an
  activity called twice (allowed) from an action taken twice (a bug).
- ``locks.json``: the per-target locks, held by a workflow ID until released.
- a verdict per target: a service named ``bad-...`` stays unhealthy after the
  rollback, so its run must undo the action and escalate.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.worker import Worker

from policies.loading import load_policy_file
from suture.models import (
    ActionOutcome,
    ClaimResult,
    Evidence,
    HealthCheck,
    HealthReport,
    Snapshot,
    TargetClaim,
    TargetRelease,
    Verdict,
)
from tests.workflow.fakes import NOW, FakeWorld
from workers.temporal_client import connect
from workflows.reliability import ReliabilityLoop

UNHEALTHY_MARK = 'service="bad-'
"""In a verification query: the rollback did not help this service."""
SLOW_EFFECT_S = 0.3
"""Time between writing a side effect and answering Temporal: a kill there forces a retry."""


class Ledger:
    """Side effects and locks on disk, safe across the worker processes of one test."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.effects = directory / "effects"
        self.locks = directory / "locks.json"
        self._guard = directory / ".guard"

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._guard.open("a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            yield

    def apply(self, kind: str, key: str) -> bool:
        """Record the effect ``kind`` for ``key`` unless it is there already; True when it was new."""
        line = f"{kind} {key}\n"
        with self._exclusive():
            if self.effects.exists() and line in self.effects.read_text().splitlines(keepends=True):
                return False
            descriptor = os.open(self.effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(descriptor, line.encode())
            finally:
                os.close(descriptor)
        return True

    def claim(self, target: str, holder: str) -> str | None:
        """Take ``target``'s lock for ``holder`` (again, after a retry); the other holder when refused."""
        with self._exclusive():
            locks = self.held()
            if locks.get(target, holder) != holder:
                return locks[target]
            self._write({**locks, target: holder})
        return None

    def release(self, target: str, holder: str) -> None:
        with self._exclusive():
            locks = self.held()
            if locks.get(target) == holder:
                del locks[target]
                self._write(locks)

    def held(self) -> dict[str, str]:
        return json.loads(self.locks.read_text()) if self.locks.exists() else {}

    def _write(self, locks: dict[str, str]) -> None:
        # Replaced in one rename: a kill mid-write leaves the old table, never half a file.
        partial = self.locks.with_suffix(".partial")
        partial.write_text(json.dumps(locks))
        partial.replace(self.locks)


def ledger_activities(world: FakeWorld, ledger: Ledger) -> list[Any]:
    """Activities that replace the world's do/undo, lock and health fakes with ledger-backed ones."""

    def effect(name: str) -> Any:
        @activity.defn(name=name)
        async def apply(snapshot: Snapshot) -> ActionOutcome:
            world.note(name, snapshot)
            changed = ledger.apply(name, snapshot.action.idempotency_key)
            await asyncio.sleep(SLOW_EFFECT_S)
            detail = f"{name} done" if changed else f"{name} already applied"
            return ActionOutcome(action=snapshot.action, changed=changed, detail=detail)

        return apply

    @activity.defn(name="audit.claim_target")
    async def claim(request: TargetClaim) -> ClaimResult:
        world.note("audit.claim_target", request)
        holder = ledger.claim(request.target, request.workflow_id)
        return ClaimResult(granted=holder is None, reason="" if holder is None else f"held by {holder}")

    @activity.defn(name="audit.release_target")
    async def release(request: TargetRelease) -> None:
        world.note("audit.release_target", request)
        ledger.release(request.target, request.workflow_id)

    @activity.defn(name="prometheus.check_health")
    async def check(request: HealthCheck) -> HealthReport:
        world.note("prometheus.check_health", request)
        verdict = Verdict.UNHEALTHY if UNHEALTHY_MARK in request.query else Verdict.HEALTHY
        value = 0.9 if verdict == Verdict.UNHEALTHY else 0.1
        evidence = [Evidence(source="prometheus", query=request.query, value=value, at=NOW)]
        return HealthReport(verdict=verdict, reason=f"ledger verdict {verdict}", evidence=evidence)

    return [effect("k8s.rollback_deployment"), effect("k8s.restore_deployment"), claim, release, check]


def activities_for(world: FakeWorld, ledger: Ledger | None) -> list[Any]:
    if ledger is None:
        return world.activities()
    replaced = {_name(fn): fn for fn in ledger_activities(world, ledger)}
    return [replaced.get(_name(fn), fn) for fn in world.activities()]


def _name(fn: Any) -> str:
    definition = activity._Definition.must_from_callable(fn)
    return str(definition.name)


async def main(address: str, task_queue: str, policy_file: str, journal: str, ledger: str | None) -> None:
    world = FakeWorld(policies=load_policy_file(Path(policy_file)), journal=Path(journal))
    client = await connect(address)
    activities = activities_for(world, Ledger(Path(ledger)) if ledger else None)
    async with Worker(client, task_queue=task_queue, workflows=[ReliabilityLoop], activities=activities):
        print("polling", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    arguments = sys.argv[1:6]
    asyncio.run(main(*arguments[:4], arguments[4] if len(arguments) > 4 else None))

"""Scale-out proven: two ``suture worker`` processes on one task queue and one PostgreSQL store.

A burst of leaked keys' audit events, one in twenty delivered twice, is
contained by two worker processes that share the task queue, the audit store
and its key, as N workers against a Temporal cluster would. Each key must be
disabled exactly once (one ``acted`` entry per key, however the runs and their
activities were spread), no lock may be left held, and the runs' histories
must show that both processes did the work.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType

from sandbox.aws import envelope
from sandbox.bench_burst import post_burst
from sandbox.bench_containment import DEACTIVATE, _inactive_keys, _seed, duplicated
from sandbox.bench_stack import BenchStack
from sandbox.stack import SANDBOX_POLICIES
from suture.config import Settings
from suture.models import LoopResult, Outcome
from tests.postgres_cluster import PostgresCluster

pytestmark = pytest.mark.integration

EVENTS = 50


@pytest.fixture
def store_url(postgres_server: PostgresCluster | None, postgres_url: str) -> str:
    """A database of its own when the session runs its own cluster, else the given one."""
    return postgres_server.database("two_workers") if postgres_server is not None else postgres_url


async def test_two_worker_processes_contain_a_burst_once_each_and_leave_no_lock(
    tmp_path: Path, store_url: str
) -> None:
    settings = Settings(state_dir=tmp_path, db_url=store_url)
    async with BenchStack(
        tmp_path, settings=settings, policy_dirs=[SANDBOX_POLICIES], worker_processes=2
    ) as stack:
        seeded = await asyncio.to_thread(_seed, stack.aws, EVENTS)
        events = [envelope(leaked) for _, leaked in seeded]

        first, again, _ = await post_burst(stack.ingress_url, stack.token, events, duplicated(EVENTS))

        assert all(answer["status"] == 202 for answer in first + again)
        workflow_ids = sorted({answer["workflow_id"] for answer in first})
        assert len(workflow_ids) == EVENTS
        results = await asyncio.gather(
            *(
                asyncio.wait_for(stack.client.get_workflow_handle(wid, result_type=LoopResult).result(), 300)
                for wid in workflow_ids
            )
        )
        entries = await asyncio.to_thread(stack.store.events)
        acted = [entry for entry in entries if entry.step == "acted"]
        disabled = Counter(entry.subject for entry in acted if entry.detail.startswith(DEACTIVATE))
        targets = [str(action.target) for result in results for action in result.actions]
        held = [target for target in targets if stack.store.lock_holder(target) is not None]
        inactive = await asyncio.to_thread(_inactive_keys, stack.aws, [actor for actor, _ in seeded])
        served_by = await _workers_that_served(stack, workflow_ids)

    assert {result.outcome for result in results} == {Outcome.RESOLVED}
    assert len(disabled) == EVENTS and set(disabled.values()) == {1}, "each key disabled exactly once"
    assert inactive == EVENTS
    assert len(targets) == EVENTS and held == [], "every lock released"
    assert len(served_by) == 2, f"both worker processes served the runs, not only {served_by}"


async def _workers_that_served(stack: BenchStack, workflow_ids: list[str]) -> set[str]:
    """The identities of the workers that started a workflow or activity task of these runs."""
    identities: set[str] = set()
    for workflow_id in workflow_ids:
        history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                identities.add(event.workflow_task_started_event_attributes.identity)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                identities.add(event.activity_task_started_event_attributes.identity)
    return identities - {""}

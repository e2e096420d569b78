"""Storms through the reliability loop: several alerts behind one upstream, one run.

These runs start child workflows (the storm run, and its run on the root), which the
time-skipping test server does not carry through reliably (a child started with
search attributes never starts, a parent is not told its child closed), so they
run on the real dev server with timers of a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from policies.graph import StormVerdict
from suture.identity import reliability_workflow_id
from suture.models import Evidence, LoopResult, Outcome, ReliabilityLoopInput
from tests.workflow.graph_fakes import FakeGraph, alert, graph_world
from workflows.reliability import ReliabilityLoop
from workflows.storm import StormLoop

DOWNSTREAM = ["cart", "checkout", "orders"]


@dataclass
class StormRuns:
    downstream: list[LoopResult]
    storm: LoopResult
    root_evidence: list[Evidence]


def storm_verdict(storm_id: str, upstream: str | None) -> StormVerdict:
    return StormVerdict(
        storm_id=storm_id,
        upstream=upstream,
        upstream_change="rolled out revision 2 (payments:v2) a minute ago" if upstream else "",
        members=[f"shop/{name}" for name in DOWNSTREAM],
        reason="3 of 3 HighErrorRate alerts call shop/payments" if upstream else "no shared change",
    )


async def storm_of_three(client: Client, queue: str, world: FakeGraph) -> StormRuns:
    """Three downstream alerts at once: the runs they started, the storm's result, its root's evidence."""
    world.correlating = len(DOWNSTREAM)
    storm_id = world.verdict.storm_id
    assert storm_id is not None
    async with Worker(
        client, task_queue=queue, workflows=[ReliabilityLoop, StormLoop], activities=world.activities()
    ):
        handles = []
        for service in DOWNSTREAM:
            notice = alert(service)
            handles.append(
                await client.start_workflow(
                    ReliabilityLoop.run,
                    ReliabilityLoopInput(alert=notice),
                    id=reliability_workflow_id(notice),
                    task_queue=queue,
                )
            )
        downstream = [await handle.result() for handle in handles]
        storm = await client.get_workflow_handle(storm_id, result_type=LoopResult).result()
        evidence: list[Evidence] = []
        if world.verdict.upstream is not None:
            root = client.get_workflow_handle(f"{storm_id}-root")
            evidence = (await root.query(ReliabilityLoop.status)).evidence
    return StormRuns(downstream, storm, evidence)


async def test_a_storm_behind_a_changed_upstream_is_fixed_once_on_the_upstream(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = graph_world(tmp_path, verdict=storm_verdict(f"storm-{task_queue}", "shop/payments"))

    storm = (await storm_of_three(temporal_client, task_queue, world)).storm

    assert storm.outcome == Outcome.RESOLVED
    assert [(a.type, a.target) for a in storm.actions] == [("k8s.rollback", "shop/payments")]
    assert [snapshot.action.target.name for snapshot in world.called("k8s.rollback_deployment")] == [
        "payments"
    ], "one action, on the upstream, and none on the services alerting behind it"
    assert world.briefings == []


async def test_every_downstream_alert_is_answered_by_joining_the_storm_run(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    storm_id = f"storm-{task_queue}"
    world = graph_world(tmp_path, verdict=storm_verdict(storm_id, "shop/payments"))

    downstream = (await storm_of_three(temporal_client, task_queue, world)).downstream

    assert [run.outcome for run in downstream] == [Outcome.SUPPRESSED] * 3
    assert all(f"storm run {storm_id}" in run.reason for run in downstream)
    assert sum(run.reason.startswith(f"joined storm run {storm_id}") for run in downstream) == 2
    assert all(run.actions == [] for run in downstream)


async def test_the_run_on_the_upstream_carries_every_downstream_alert_as_evidence(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    storm_id = f"storm-{task_queue}"
    world = graph_world(tmp_path, verdict=storm_verdict(storm_id, "shop/payments"))

    runs = await storm_of_three(temporal_client, task_queue, world)

    root_run = f"{storm_id}-root"
    detected = [e for e in world.audit if e.workflow_id == root_run and e.step == "detected"]
    assert detected and "DependencyStorm firing for shop/payments" in detected[0].detail
    (root,) = [result for result in world.closed if result.workflow_id == root_run]
    assert root.policy == "storm-root"
    joined = sorted(str(item.value) for item in runs.root_evidence if item.note == "joined this storm run")
    assert joined == [f"shop/{name}" for name in DOWNSTREAM]


async def test_a_storm_with_no_clear_root_gets_one_briefing_and_no_action(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = graph_world(tmp_path, verdict=storm_verdict(f"storm-{task_queue}", None))

    runs = await storm_of_three(temporal_client, task_queue, world)
    downstream, storm = runs.downstream, runs.storm

    assert storm.outcome == Outcome.ESCALATED and storm.actions == []
    assert [run.outcome for run in downstream] == [Outcome.SUPPRESSED] * 3
    assert len(world.briefings) == 1, "one briefing for the whole storm, not one per alert"
    assert all(f"shop/{name}" in world.briefings[0].scope for name in DOWNSTREAM)
    assert world.called("k8s.snapshot_deployment") == []


async def test_an_alert_that_is_no_storm_is_remediated_alone(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = graph_world(tmp_path)
    notice = alert("checkout")
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[ReliabilityLoop, StormLoop],
        activities=world.activities(),
    ):
        result = await temporal_client.execute_workflow(
            ReliabilityLoop.run,
            ReliabilityLoopInput(alert=notice),
            id=reliability_workflow_id(notice),
            task_queue=task_queue,
        )
    assert result.outcome == Outcome.RESOLVED
    assert [(a.type, a.target) for a in result.actions] == [("k8s.rollback", "shop/checkout")]
    assert any(entry.step == "no_storm" for entry in world.audit)

"""The resource drills end to end: 30 days of history in real Prometheus, fleets in moto and the emulator.

They run concurrently on a stack of their own (each sweeps its own fleet), then
dry-run-rate-gate alone, since it moves the resource loop's stage; each test then
checks one drill against the issue's table, and a last one that the kill switch
pauses the sweep's schedule.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from policies.prices import load_price_table
from sandbox.drill import DrillResult
from sandbox.readiness_drills import READINESS_DRILLS
from sandbox.runner import all_drills, run_on
from sandbox.stack import Stack
from suture.models import Loop, Target
from suture.stages import Stage
from suture.store import AuditStore
from tests.drills.conftest import record_histories
from workers.schedules import SWEEP_SCHEDULE_ID, ensure_sweep_schedule, set_sweep_paused
from workflows.resource import resource_workflow_id

pytestmark = [pytest.mark.drill, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A stack of the resource drills' own: the drills count a fleet's actions per day, and the
    other loops' drills sharing one estate changed those counts."""
    async with Stack(Path(tmp_path_factory.mktemp("resource-stack")), sandbox=True) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def resource(stack: Stack) -> dict[str, DrillResult]:
    # dry-run-rate-gate is a readiness drill on this estate: exclusive, it runs after action-cap.
    drills = [
        d
        for d in all_drills().values()
        if d.loop == "resource" and (d.name not in READINESS_DRILLS or d.name == "dry-run-rate-gate")
    ]
    report = await run_on(stack, drills, lambda _message: None)
    results = {result.scenario: result for result in report.drills}
    await record_histories(stack, _histories(stack, results))
    return results


def _histories(stack: Stack, results: dict[str, DrillResult]) -> dict[str, str | None]:
    """Each sweep, and the run that stopped a GPU instance and the one that right-sized a Deployment."""
    runs: dict[str, str | None] = {f"sweep-{name}": result.workflow_id for name, result in results.items()}
    closed = stack.store.runs(loop=Loop.RESOURCE)
    for name, kind in (("idle-gpu-fleet", "ec2-instance"), ("overprovisioned-deployment", "deployment")):
        actions = results[name].actions if name in results else []
        if actions:
            scope, _, resource = actions[0].target.partition("/")
            stem = resource_workflow_id(Target(kind=kind, scope=scope, name=resource))
            runs[name] = next(run.workflow_id for run in closed if run.workflow_id.startswith(stem))
    return runs


def passed(results: dict[str, DrillResult], name: str) -> DrillResult:
    result = results[name]
    assert result.passed, json.dumps(result.model_dump(mode="json"), indent=1)
    return result


async def test_the_idle_dev_gpu_fleet_is_stopped_and_saves_the_price_tables_figure(
    resource: dict[str, DrillResult],
) -> None:
    result = passed(resource, "idle-gpu-fleet")
    assert {action.type for action in result.actions} == {"ec2.stop_instances"}
    assert len(result.actions) == 4
    assert result.savings_usd_month == round(
        4 * round(load_price_table().instances["p3.2xlarge"] * 730, 2), 2
    )


async def test_an_overprovisioned_deployment_is_right_sized_once_a_human_approves(
    resource: dict[str, DrillResult],
) -> None:
    result = passed(resource, "overprovisioned-deployment")
    assert result.human_touched and result.verified
    assert result.savings_usd_month is not None and result.savings_usd_month > 0


async def test_a_nightly_batch_job_is_left_alone(resource: dict[str, DrillResult]) -> None:
    result = passed(resource, "bursty-batch-job")
    assert result.actions == [] and result.savings_usd_month == 0


async def test_untagged_resources_get_a_request_for_tags_and_no_action(
    resource: dict[str, DrillResult],
) -> None:
    result = passed(resource, "untagged-resources")
    assert result.escalated
    assert all(action.mode == "dry_run" for action in result.actions)


async def test_a_workload_younger_than_thirty_days_is_not_touched(resource: dict[str, DrillResult]) -> None:
    assert passed(resource, "young-workload").actions == []


async def test_only_five_percent_of_a_fleet_is_acted_on_in_a_day(resource: dict[str, DrillResult]) -> None:
    result = passed(resource, "action-cap")
    assert len(result.actions) == 5


async def test_a_dry_run_policy_scores_what_acting_would_have_done(resource: dict[str, DrillResult]) -> None:
    result = passed(resource, "resource-shadow-score")
    assert result.outcome == "dry_run" and result.actions == []
    assert "'right'" in result.detail and "'undecided'" in result.detail


async def test_too_many_logged_actions_in_dry_run_refuse_the_next_stage_naming_the_rate(
    resource: dict[str, DrillResult], stack: Stack
) -> None:
    result = passed(resource, "dry-run-rate-gate")
    assert "dry-run rate" in result.detail
    assert stack.store.stage(Loop.RESOURCE).stage == Stage.LIVE, "the drill puts the stage back"


async def test_the_money_saved_reaches_the_audit_store(
    resource: dict[str, DrillResult], stack: Stack
) -> None:
    store = AuditStore.from_settings(stack.settings)
    try:
        saved = sum(
            action.savings_usd_month or 0.0
            for run in store.runs(loop="resource")  # type: ignore[arg-type]
            for action in run.actions
            if not action.compensated
        )
    finally:
        store.close()
    assert saved >= resource["idle-gpu-fleet"].savings_usd_month  # type: ignore[operator]


async def test_pausing_the_resource_loop_pauses_the_sweep_schedule(stack: Stack) -> None:
    await ensure_sweep_schedule(stack.client, stack.task_queue)
    handle = stack.client.get_schedule_handle(SWEEP_SCHEDULE_ID)
    try:
        assert await set_sweep_paused(stack.client, True, "drill: kill switch")
        assert (await handle.describe()).schedule.state.paused
        await ensure_sweep_schedule(stack.client, stack.task_queue)
        assert (await handle.describe()).schedule.state.paused, "an update must keep a pause"
    finally:
        await set_sweep_paused(stack.client, False, "drill: resumed")
    assert not (await handle.describe()).schedule.state.paused

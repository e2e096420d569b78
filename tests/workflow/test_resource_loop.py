"""The resource loop in the time-skipping environment: fake fleet, fake EC2, suture's fake bookkeeping."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from policies.loading import load_policy_file
from policies.prices import load_price_table
from policies.resource import ResourcePolicy, judge_fleet
from suture.fleet import (
    TAGS_REQUESTED,
    ActedToday,
    ActedTodayQuery,
    FleetAnalysis,
    FleetQuery,
    InHand,
    InHandQuery,
    ResourceCheck,
    ResourcePolicySet,
    SweepInput,
    SweepResult,
    TagRequestQuery,
    TagRequestSeen,
    UtilisationQuery,
    UtilisationSeen,
    UtilisationSummary,
    Workload,
    WorkloadKind,
)
from suture.models import (
    ActionOutcome,
    AuditEntry,
    HealthReport,
    LoopResult,
    Mode,
    Outcome,
    PlannedAction,
    Snapshot,
    Verdict,
)
from tests.workflow.conftest import _test_server_path
from tests.workflow.fakes import FakeBookkeeping
from workflows.resource import ResourceLoop, ResourceSweep, resource_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

POLICIES = [
    policy.model_copy(update={"verify": policy.verify.model_copy(update={"window": 60.0})})
    for policy in load_policy_file(Path("sandbox/policies/resource.yaml"))
    if isinstance(policy, ResourcePolicy)
]


def instance(name: str, env: str = "dev", owner: str = "ml-research") -> Workload:
    return Workload(
        kind=WorkloadKind.EC2_INSTANCE,
        scope="123456789012",
        name=name,
        labels={"env": env, "owner": owner} if owner else {"env": env},
        region="us-east-1",
        instance_type="p3.2xlarge",
        state="running",
    )


@dataclass
class FakeFleet:
    """Twenty GPU instances, ``idle`` of them idle; EC2 that stops and, if asked, starts again by itself."""

    idle: int = 1
    untagged: int = 0
    restarted_by_someone: bool = False
    mode: Mode | None = None
    """Every policy in this mode instead of its own (``dry_run`` to watch a shadow score)."""
    stopped_by_someone: bool = False
    """Someone stops the first instance while a dry run watches it."""
    busy_later: float | None = None
    """The 95th percentile the instances show after the sweep, when they get busy by themselves."""
    calls: list[tuple[str, Any]] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def first(self) -> str:
        return f"i-{self.prefix}00"

    def workloads(self) -> list[Workload]:
        return [
            instance(f"i-{self.prefix}{index:02}", owner="" if index >= 20 - self.untagged else "ml")
            for index in range(20)
        ]

    def activities(self, books: FakeBookkeeping | None = None) -> list[Any]:
        """The fleet's activities; ``books`` holds the trail and the locks the sweep's bookkeeping reads."""
        fleet = self
        trail: list[AuditEntry] = books.audit if books is not None else []

        @activity.defn(name="resource.analyse_fleet")
        async def analyse(query: FleetQuery) -> FleetAnalysis:
            workloads = fleet.workloads()
            usage = {
                w.key: {
                    "gpu": UtilisationSummary(
                        key=w.key,
                        resource="gpu",
                        p95=0.02 if i < fleet.idle else 0.5,
                        max=0.5 if i >= fleet.idle else 0.03,
                        history_days=30,
                    )
                }
                for i, w in enumerate(workloads)
            }
            policies = [ResourcePolicy.model_validate(item) for item in query.policies]
            judged = judge_fleet(workloads, usage, policies, load_price_table(), query.sweep_id)
            return FleetAnalysis(
                fleet_size=judged.fleet_size,
                tagged=judged.tagged,
                counts={str(k): v for k, v in judged.counts.items()},
                untagged=judged.untagged,
                findings=judged.findings,
                evaluated_at=datetime.now(UTC),
            )

        @activity.defn(name="resource.acted_today")
        async def acted_today(_: ActedTodayQuery) -> ActedToday:
            return ActedToday()

        @activity.defn(name="policy.resource_set")
        async def policy_set(_: ActedTodayQuery) -> ResourcePolicySet:
            pinned = [
                policy.model_copy(update={"mode": fleet.mode}) if fleet.mode else policy
                for policy in POLICIES
            ]
            return ResourcePolicySet(policies=[policy.model_dump(mode="json") for policy in pinned])

        @activity.defn(name="resource.utilisation_since")
        async def utilisation_since(query: UtilisationQuery) -> UtilisationSeen:
            if fleet.stopped_by_someone:
                fleet.states[fleet.first] = "stopped"
            return UtilisationSeen(p95=fleet.busy_later, query=f"p95 of {query.key}")

        @activity.defn(name="ec2.snapshot_instance")
        async def snapshot(action: PlannedAction) -> Snapshot:
            fleet.calls.append(("snapshot", action.target.name))
            return Snapshot(
                action=action,
                state={"region": "us-east-1", "state": "running", "instance_type": "p3.2xlarge"},
            )

        @activity.defn(name="ec2.stop_instance")
        async def stop(snapshot: Snapshot) -> ActionOutcome:
            fleet.calls.append(("stop", snapshot.action.target.name))
            fleet.states[snapshot.action.target.name] = "running" if fleet.restarted_by_someone else "stopped"
            return ActionOutcome(action=snapshot.action, changed=True, detail="stopped")

        @activity.defn(name="ec2.start_instance")
        async def start(snapshot: Snapshot) -> ActionOutcome:
            fleet.calls.append(("start", snapshot.action.target.name))
            return ActionOutcome(action=snapshot.action, changed=True, detail="started again")

        @activity.defn(name="ec2.verify_instance_stopped")
        async def verify(check: ResourceCheck) -> HealthReport:
            if fleet.stopped_by_someone:
                fleet.states[fleet.first] = "stopped"
            state = fleet.states.get(check.action.target.name, "running")
            verdict = Verdict.HEALTHY if state == "stopped" else Verdict.UNHEALTHY
            return HealthReport(verdict=verdict, reason=f"instance is {state}")

        @activity.defn(name="resource.tags_asked")
        async def tags_asked(query: TagRequestQuery) -> TagRequestSeen:
            asked = [
                entry.at
                for entry in trail
                if entry.step == TAGS_REQUESTED
                and entry.at >= query.since
                and entry.detail.endswith(f"[{query.digest}]")
            ]
            return TagRequestSeen(asked_at=max(asked, default=None))

        @activity.defn(name="resource.in_hand")
        async def in_hand(query: InHandQuery) -> InHand:
            if books is None:
                return InHand()
            released = {release.target for release in books.called("audit.release_target")}
            held = {
                claim.target: claim.workflow_id
                for claim in books.called("audit.claim_target")
                if claim.target not in released
            }
            return InHand(holders={target: held[target] for target in query.targets if target in held})

        return [
            *(analyse, acted_today, policy_set, tags_asked, in_hand, utilisation_since),
            *(snapshot, stop, start, verify),
        ]


@contextlib.asynccontextmanager
async def resource_worker(
    env: WorkflowEnvironment, fleet: FakeFleet, books: FakeBookkeeping
) -> AsyncIterator[Callable[[], Awaitable[SweepResult]]]:
    """A worker for the resource loop over the fakes; yields a function that runs one sweep to its end."""
    queue = f"resource-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ResourceSweep, ResourceLoop],
        activities=[*books.bookkeeping_activities(), *fleet.activities(books)],
    ):

        async def sweep_now() -> SweepResult:
            return await env.client.execute_workflow(
                ResourceSweep.run, SweepInput(), id=f"sweep-{uuid.uuid4()}", task_queue=queue
            )

        yield sweep_now


async def sweep(
    env: WorkflowEnvironment, fleet: FakeFleet, books: FakeBookkeeping
) -> tuple[SweepResult, list[LoopResult]]:
    async with resource_worker(env, fleet, books) as sweep_now:
        result = await sweep_now()
        runs = [await finished(env, run.workflow_id) for run in result.candidates if run.started]
    return result, runs


@pytest_asyncio.fixture(loop_scope="module")
async def fresh_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test: abandoned children of one test never hold another's clock."""
    async with await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=_test_server_path()
    ) as environment:
        yield environment


async def finished(env: WorkflowEnvironment, workflow_id: str) -> LoopResult:
    """A child run's result, once the skipped clock has passed its verification window."""
    handle = env.client.get_workflow_handle(workflow_id, result_type=LoopResult)
    for attempt in range(100):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
        if attempt < 20:  # most runs end without a timer; only a verification waits for the clock
            await asyncio.sleep(0.2)
        else:
            await env.sleep(30)
    return await handle.result()


async def test_an_idle_dev_instance_is_stopped_and_verified(fresh_env: WorkflowEnvironment) -> None:
    fleet, books = FakeFleet(idle=1), FakeBookkeeping(policies=[])
    result, runs = await sweep(fresh_env, fleet, books)
    assert [run.outcome for run in runs] == [Outcome.RESOLVED]
    assert fleet.calls == [("snapshot", fleet.first), ("stop", fleet.first)]
    assert runs[0].actions[0].savings_usd_month == round(3.06 * 730, 2)
    assert result.candidates[0].workflow_id.startswith(resource_workflow_id(instance(fleet.first).target))


async def test_an_instance_started_again_during_the_window_is_undone_and_escalated(
    fresh_env: WorkflowEnvironment,
) -> None:
    fleet, books = FakeFleet(idle=1, restarted_by_someone=True), FakeBookkeeping(policies=[])
    _, runs = await sweep(fresh_env, fleet, books)
    assert runs[0].outcome == Outcome.ESCALATED
    assert ("start", fleet.first) in fleet.calls
    assert runs[0].actions[0].compensated
    assert books.briefings and "did not hold" in books.briefings[-1].reason


@pytest.mark.parametrize(
    ("change", "score"),
    [
        ({"stopped_by_someone": True}, "right"),
        ({"busy_later": 0.4}, "not_helpful"),
        ({"busy_later": 0.01}, "undecided"),
    ],
)
async def test_a_policy_in_dry_run_watches_its_candidate_and_scores_what_acting_would_have_done(
    fresh_env: WorkflowEnvironment, change: dict[str, Any], score: str
) -> None:
    fleet, books = FakeFleet(idle=1, mode=Mode.DRY_RUN, **change), FakeBookkeeping(policies=[])
    _, runs = await sweep(fresh_env, fleet, books)
    assert [run.outcome for run in runs] == [Outcome.DRY_RUN]
    assert ("stop", fleet.first) not in fleet.calls
    shadows = [entry for entry in books.audit if entry.step == "shadow"]
    assert [entry.evidence[0].value for entry in shadows] == [score]


async def test_a_candidate_held_back_by_a_gate_is_not_shadow_scored(fresh_env: WorkflowEnvironment) -> None:
    fleet, books = FakeFleet(idle=1, untagged=2, stopped_by_someone=True), FakeBookkeeping(policies=[])
    _, runs = await sweep(fresh_env, fleet, books)
    assert [run.outcome for run in runs] == [Outcome.DRY_RUN]
    assert not [entry for entry in books.audit if entry.step == "shadow"]


async def test_a_resource_held_by_a_security_containment_is_not_touched(
    fresh_env: WorkflowEnvironment,
) -> None:
    fleet = FakeFleet(idle=1)
    books = FakeBookkeeping(policies=[], claim_granted=False, claim_refusal="held by security-evt-1")
    _, runs = await sweep(fresh_env, fleet, books)
    assert runs[0].outcome == Outcome.SUPPRESSED
    assert "security" in runs[0].reason
    assert fleet.calls == []


async def test_below_the_tag_coverage_candidates_are_dry_run_and_tags_are_asked_for(
    fresh_env: WorkflowEnvironment,
) -> None:
    fleet, books = FakeFleet(idle=1, untagged=2), FakeBookkeeping(policies=[])
    result, runs = await sweep(fresh_env, fleet, books)
    assert result.escalated and "tag" in books.briefings[0].title
    assert [run.outcome for run in runs] == [Outcome.DRY_RUN]
    assert result.candidates[0].mode == Mode.DRY_RUN
    assert fleet.calls == []


async def test_an_hourly_sweep_asks_for_the_same_tags_once_a_day_and_again_when_the_list_changes(
    fresh_env: WorkflowEnvironment,
) -> None:
    fleet, books = FakeFleet(idle=0, untagged=2), FakeBookkeeping(policies=[])
    swept = []
    async with resource_worker(fresh_env, fleet, books) as sweep_now:
        with fresh_env.auto_time_skipping_disabled():  # within one day, as a day of hourly sweeps is
            for untagged in (2, 2, 3):
                fleet.untagged = untagged
                swept.append(await sweep_now())
    first, second, third = swept

    assert (first.escalated, second.escalated, third.escalated) == (True, False, True)
    assert [briefing.title.split(" ")[0] for briefing in books.briefings] == ["2", "3"]
    assert any(entry.step == "tags_already_requested" for entry in books.audit)


async def test_a_second_sweep_leaves_a_candidate_already_in_hand(fresh_env: WorkflowEnvironment) -> None:
    fleet, books = FakeFleet(idle=1), FakeBookkeeping(policies=[])
    async with resource_worker(fresh_env, fleet, books) as sweep_now:
        first = await sweep_now()
        for _ in range(100):  # the first run claims its target, then waits out its verification window
            if books.called("audit.claim_target"):
                break
            await asyncio.sleep(0.05)
        second = await sweep_now()
        await finished(fresh_env, first.candidates[0].workflow_id)
    assert first.candidates[0].started
    assert not second.candidates[0].started and "already in hand" in second.candidates[0].note
    assert first.candidates[0].workflow_id in second.candidates[0].note
    [left] = [entry for entry in books.audit if entry.step == "left_in_hand"]
    assert first.candidates[0].workflow_id in left.detail


async def test_every_run_on_one_resource_has_an_id_and_an_audit_trail_of_its_own(
    fresh_env: WorkflowEnvironment,
) -> None:
    # Below the tag coverage bar the candidate is only dry-run, as it would be every hour.
    fleet, books = FakeFleet(idle=1, untagged=2), FakeBookkeeping(policies=[])
    swept = []
    async with resource_worker(fresh_env, fleet, books) as sweep_now:
        with fresh_env.auto_time_skipping_disabled():
            for _ in range(2):  # the second sweep, within the same second, once the first run has ended
                result = await sweep_now()
                await finished(fresh_env, result.candidates[0].workflow_id)
                swept.append(result)
    ids = [result.candidates[0].workflow_id for result in swept]
    assert swept[1].candidates[0].started and ids[0] != ids[1]
    assert {entry.workflow_id for entry in books.audit if entry.step == "detected"} == set(ids)

"""The security loop's decisions, in the time-skipping environment with fake activities.

Every activity is faked under its real name; the fakes record calls so a test can
say what was touched and what was not.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from policies.loading import load_policy_file
from policies.registry import registered_actions
from suture.identity import security_workflow_id
from suture.models import (
    ActionOutcome,
    ApprovalDecision,
    AwsEvent,
    AwsPrincipal,
    ContainmentCheck,
    CredentialActivity,
    CredentialQuery,
    Evidence,
    HealthReport,
    Loop,
    LoopResult,
    Mode,
    Outcome,
    PlannedAction,
    RoleDependents,
    RoleDependentsRequest,
    SecurityLoopInput,
    Snapshot,
    UndoRequest,
    Verdict,
)
from tests.workflow.fakes import FakeBookkeeping
from workflows.security import SecurityLoop
from workflows.undo import UndoRun, undo_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACCOUNT = "123456789012"
DRILL_POLICIES = Path(__file__).parents[2] / "sandbox" / "policies" / "security.yaml"
KEY = "AKIAEXAMPLEKEY00001"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/shared-app"
VERIFICATIONS = [
    "aws.verify_containment",
    *(spec.activities()["verify"] for spec in registered_actions() if spec.loop == Loop.SECURITY),
]
"""Every action's own verification, and the one activity runs recorded before it asked instead."""


@dataclass
class FakeAws(FakeBookkeeping):
    """A scripted AWS; suture's bookkeeping comes from the shared fakes."""

    baseline: CredentialActivity | None = None
    verdict: Verdict = Verdict.HEALTHY
    claim_refusal: str = "held by another run"

    def changes(self) -> list[str]:
        reads = {"policy.select", "aws.credential_activity", "aws.role_dependents", *VERIFICATIONS}
        return [
            name for name, _ in self.calls if name not in reads and "snapshot" not in name and "." in name
        ]

    def activities(self) -> list[Any]:
        world = self

        @activity.defn(name="aws.credential_activity")
        async def credential_activity(query: CredentialQuery) -> CredentialActivity:
            world.calls.append(("aws.credential_activity", query))
            if world.baseline is None:
                raise RuntimeError("the trail log group does not exist")
            return world.baseline

        @activity.defn(name="aws.role_dependents")
        async def role_dependents(request: RoleDependentsRequest) -> RoleDependents:
            world.calls.append(("aws.role_dependents", request))
            return RoleDependents(
                role_arn=request.role_arn,
                dependents=[f"ec2 instance i-0{n} (checkout-{n})" for n in range(4)]
                + ["lambda function thumbnails"],
            )

        def verification(name: str) -> Any:
            @activity.defn(name=name)
            async def verify(check: ContainmentCheck) -> HealthReport:
                world.calls.append((name, check))
                return HealthReport(
                    verdict=world.verdict,
                    reason=f"fake verdict {world.verdict}",
                    evidence=[
                        Evidence(
                            source="aws.iam", query=str(check.action.target), value="x", at=check.contained_at
                        )
                    ],
                )

            return verify

        def snapshot(name: str) -> Any:
            @activity.defn(name=name)
            async def prepare(action: PlannedAction) -> Snapshot:
                world.calls.append((name, action))
                return Snapshot(action=action, state={"status": "Active", **action.params["target"]})

            return prepare

        def change(name: str) -> Any:
            @activity.defn(name=name)
            async def do(snapshot: Snapshot) -> ActionOutcome:
                world.calls.append((name, snapshot))
                return ActionOutcome(action=snapshot.action, changed=True, detail=f"{name} done")

            return do

        prepares = [
            snapshot(n)
            for n in (
                "iam.snapshot_access_key",
                "ec2.snapshot_ingress",
                "iam.snapshot_policy_attachment",
                "s3.snapshot_public_access_block",
            )
        ]
        changes = [
            change(n)
            for n in (
                "iam.deactivate_access_key",
                "iam.reactivate_access_key",
                "ec2.revoke_ingress",
                "ec2.authorize_ingress",
                "iam.detach_policy",
                "iam.attach_policy",
                "s3.restore_public_access_block",
                "s3.remove_public_access_block",
            )
        ]
        return [
            *self.bookkeeping_activities(),
            credential_activity,
            role_dependents,
            *(verification(name) for name in VERIFICATIONS),
            *prepares,
            *changes,
        ]


def drill_world(**kwargs: Any) -> FakeAws:
    return FakeAws(policies=load_policy_file(DRILL_POLICIES), **kwargs)


def usual_baseline() -> CredentialActivity:
    return CredentialActivity(
        calls=340,
        successful_calls=340,
        source_ips=["10.0.1.15", "10.0.1.16"],
        event_names=["DescribeInstances", "GetObject", "PutObject"],
        user_agents=["aws-cli/2.15.0"],
        source="cloudwatch-logs:trail",
    )


def aws_event(name: str, params: dict[str, Any] | None = None, **fields: Any) -> AwsEvent:
    now = datetime.now(UTC)
    return AwsEvent(
        event_id=str(uuid.uuid4()),
        account=fields.pop("account", ACCOUNT),
        region="us-east-1",
        event_name=name,
        event_source=fields.pop("event_source", "ec2.amazonaws.com"),
        event_time=now,
        principal=fields.pop(
            "principal", AwsPrincipal(type="IAMUser", user_name="ci-deployer", access_key_id=KEY)
        ),
        request_parameters=params or {},
        received_at=now,
        **fields,
    )


def leaked_key_call(**fields: Any) -> AwsEvent:
    defaults: dict[str, Any] = {"source_ip": "203.0.113.66", "user_agent": "python-requests/2.31"}
    return aws_event("ListBuckets", event_source="s3.amazonaws.com", **(defaults | fields))


def ingress_event(cidr: str, port: int) -> AwsEvent:
    permission = {
        "ipProtocol": "tcp",
        "fromPort": port,
        "toPort": port,
        "ipRanges": {"items": [{"cidrIp": cidr}]},
    }
    return aws_event(
        "AuthorizeSecurityGroupIngress", {"groupId": "sg-0web", "ipPermissions": {"items": [permission]}}
    )


async def wait_for_approval(handle: Any) -> None:
    for _ in range(200):
        if (await handle.query(SecurityLoop.status)).pending_approval:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run never asked for approval")


async def run(env: WorkflowEnvironment, world: FakeAws, event: AwsEvent, signal: Any = None) -> LoopResult:
    queue = f"test-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[SecurityLoop], activities=world.activities()):
        handle = await env.client.start_workflow(
            SecurityLoop.run, SecurityLoopInput(event=event), id=security_workflow_id(event), task_queue=queue
        )
        if signal is not None:
            await signal(handle)
        return await handle.result()


# --- containment -----------------------------------------------------------------------------


async def test_a_leaked_key_is_deactivated_on_its_own_and_verified(env: WorkflowEnvironment) -> None:
    world = drill_world(baseline=usual_baseline())

    result = await run(env, world, leaked_key_call())

    assert result.outcome == Outcome.RESOLVED
    assert result.mode == Mode.AUTONOMOUS
    assert [(a.type, a.target) for a in result.actions] == [
        ("iam.deactivate_access_key", f"{ACCOUNT}/ci-deployer/{KEY}")
    ]
    assert world.changes() == ["audit.claim_target", "iam.deactivate_access_key", "audit.release_target"]
    [check] = world.called("iam.verify_access_key_disabled")
    assert check.grace_s == 1.0
    assert [snapshot.action.type for snapshot in result.undo] == ["iam.deactivate_access_key"]
    assert result.timeline.verified is not None


async def test_the_audit_trail_keeps_its_order_though_early_entries_are_written_in_the_background(
    env: WorkflowEnvironment,
) -> None:
    world = drill_world(baseline=usual_baseline())

    await run(env, world, leaked_key_call())

    entries = sorted(world.audit, key=lambda entry: entry.seq)
    assert [entry.seq for entry in entries] == list(range(1, len(entries) + 1))
    steps = ["detected", "assessed", "decided", "acted", "verified", "resolved"]
    assert [entry.step for entry in entries] == steps


async def test_the_baseline_window_ends_before_the_event_and_skips_the_event_itself(
    env: WorkflowEnvironment,
) -> None:
    world = drill_world(baseline=usual_baseline())
    event = leaked_key_call(cloudtrail_event_id="ct-1")

    await run(env, world, event)

    [query] = world.called("aws.credential_activity")
    assert query.access_key_id == KEY and not query.role_arn
    assert query.end is not None and query.end < event.event_time
    assert query.exclude_event_ids == ["ct-1"]


async def test_world_open_ssh_is_revoked_rule_by_rule(env: WorkflowEnvironment) -> None:
    world = drill_world()

    result = await run(env, world, ingress_event("0.0.0.0/0", 22))

    assert result.outcome == Outcome.RESOLVED
    [revoked] = world.called("ec2.revoke_ingress")
    assert revoked.action.params["target"]["cidr"] == "0.0.0.0/0"
    assert revoked.action.target.name == "sg-0web/tcp:22-22/0.0.0.0/0"


async def test_more_rules_than_the_actions_cap_escalate_before_any_is_revoked(
    env: WorkflowEnvironment,
) -> None:
    world = drill_world(baseline=usual_baseline())
    ports = [22, 23, 445, 3306, 3389, 5432, 6379, 9200, 27017]
    event = ingress_event("0.0.0.0/0", ports[0])
    items = [
        {**event.request_parameters["ipPermissions"]["items"][0], "fromPort": p, "toPort": p} for p in ports
    ]
    event = event.model_copy(
        update={"request_parameters": {**event.request_parameters, "ipPermissions": {"items": items}}}
    )

    result = await run(env, world, event)

    assert result.outcome == Outcome.ESCALATED
    assert "ec2.revoke_ingress is planned on 9 targets but may act on at most 8" in result.reason
    assert world.called("ec2.revoke_ingress") == [] and world.called("ec2.snapshot_ingress") == []


# --- not acting -----------------------------------------------------------------------------


async def test_a_shared_role_is_never_touched_and_the_briefing_lists_its_dependents(
    env: WorkflowEnvironment,
) -> None:
    world = drill_world(baseline=usual_baseline())
    session = AwsPrincipal(type="AssumedRole", access_key_id="ASIAEXAMPLESESSION1", role_arn=ROLE)

    result = await run(env, world, leaked_key_call(principal=session))

    assert result.outcome == Outcome.ESCALATED
    assert result.actions == []
    assert world.changes() == []
    [briefing] = world.briefings
    assert len(briefing.dependents) == 5
    assert "every workload" in briefing.reason
    assert world.called("aws.credential_activity")[0].role_arn == ROLE


async def test_an_ingress_rule_for_a_private_range_is_suppressed(env: WorkflowEnvironment) -> None:
    world = drill_world()

    result = await run(env, world, ingress_event("10.20.0.0/16", 5432))

    assert result.outcome == Outcome.SUPPRESSED
    assert "private" in result.reason
    assert world.changes() == []
    assert world.briefings == []


async def test_an_event_of_an_account_without_policy_is_recorded_and_ignored(
    env: WorkflowEnvironment,
) -> None:
    world = drill_world()

    result = await run(env, world, aws_event("AuthorizeSecurityGroupIngress", account="210987654321"))

    assert result.outcome == Outcome.SUPPRESSED
    assert "210987654321" in result.reason
    assert [entry.step for entry in sorted(world.audit, key=lambda e: e.seq)] == ["detected", "suppressed"]
    assert world.briefings == []


async def test_a_target_another_run_holds_is_left_alone(env: WorkflowEnvironment) -> None:
    world = drill_world(baseline=usual_baseline(), claim_granted=False)

    result = await run(env, world, leaked_key_call())

    assert result.outcome == Outcome.SUPPRESSED
    assert "held by another run" in result.reason
    assert world.called("iam.deactivate_access_key") == []


async def test_a_key_whose_baseline_cannot_be_read_is_escalated_without_acting(
    env: WorkflowEnvironment,
) -> None:
    world = drill_world(baseline=None)

    result = await run(env, world, leaked_key_call())

    assert result.outcome == Outcome.ESCALATED
    assert "baseline" in result.reason
    assert world.called("iam.deactivate_access_key") == []


async def test_an_observing_policy_records_what_it_would_have_done(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    path = tmp_path / "observe.yaml"
    path.write_text(DRILL_POLICIES.read_text().replace("mode: autonomous", "mode: observe"))
    world = FakeAws(policies=load_policy_file(path))

    result = await run(env, world, ingress_event("0.0.0.0/0", 22))

    assert result.outcome == Outcome.DRY_RUN
    assert world.changes() == []
    assert any("ec2.revoke_ingress" in entry.detail for entry in world.audit if entry.step == "dry_run")


@pytest.mark.parametrize(("someone_contained", "score"), [(True, "right"), (False, "undecided")])
async def test_a_dry_run_watches_whether_someone_contains_the_same_scope(
    env: WorkflowEnvironment, tmp_path: Path, someone_contained: bool, score: str
) -> None:
    path = tmp_path / "observe.yaml"
    path.write_text(DRILL_POLICIES.read_text().replace("mode: autonomous", "mode: observe"))
    world = FakeAws(policies=load_policy_file(path))
    world.verdict = Verdict.HEALTHY if someone_contained else Verdict.UNHEALTHY

    result = await run(env, world, ingress_event("0.0.0.0/0", 22))

    assert result.outcome == Outcome.DRY_RUN and world.changes() == []
    [shadow] = [entry for entry in world.audit if entry.step == "shadow"]
    assert shadow.evidence[0].value == score
    assert "sg-0web" in shadow.detail
    assert [check.action.type for check in world.called("ec2.verify_ingress_revoked")] == [
        "ec2.revoke_ingress"
    ]


# --- supervised -----------------------------------------------------------------------------


def moderate_risk_call() -> AwsEvent:
    """A known source calling an API the key never calls: worth asking, not acting alone."""
    return aws_event(
        "DeleteObject", event_source="s3.amazonaws.com", source_ip="10.0.1.15", user_agent="aws-cli/2.15.0"
    )


async def test_moderate_risk_waits_for_approval_and_escalates_when_nobody_answers(
    env: WorkflowEnvironment,
) -> None:
    world = drill_world(baseline=usual_baseline())

    result = await run(env, world, moderate_risk_call())

    assert result.outcome == Outcome.ESCALATED
    assert result.mode == Mode.SUPERVISED
    assert "nobody approved within 120s" in result.reason
    assert world.called("iam.deactivate_access_key") == []


async def test_an_approved_moderate_risk_key_is_contained(env: WorkflowEnvironment) -> None:
    world = drill_world(baseline=usual_baseline())

    async def approve(handle: Any) -> None:
        await wait_for_approval(handle)
        await handle.signal(SecurityLoop.approve, ApprovalDecision(approver="mallory"))
        await handle.signal(SecurityLoop.approve, ApprovalDecision(approver="secops-alice", note="go"))

    result = await run(env, world, moderate_risk_call(), approve)

    assert result.outcome == Outcome.RESOLVED
    assert result.human_touched and result.approver == "secops-alice"
    assert len(world.called("iam.deactivate_access_key")) == 1


# --- verification -----------------------------------------------------------------------------


async def test_calls_after_containment_escalate_and_leave_the_key_disabled(env: WorkflowEnvironment) -> None:
    world = drill_world(baseline=usual_baseline(), verdict=Verdict.UNHEALTHY)

    result = await run(env, world, leaked_key_call())

    assert result.outcome == Outcome.ESCALATED
    assert result.verdict == Verdict.UNHEALTHY
    assert "left in place" in result.reason
    assert world.called("iam.reactivate_access_key") == []
    assert [snapshot.action.type for snapshot in result.undo] == ["iam.deactivate_access_key"]
    assert result.briefing is not None and result.briefing.actions_taken


async def test_verification_waits_out_the_propagation_window(env: WorkflowEnvironment) -> None:
    world = drill_world(baseline=usual_baseline())

    result = await run(env, world, leaked_key_call())

    assert result.timeline.acted is not None and result.timeline.verified is not None
    assert result.timeline.verified - result.timeline.acted >= timedelta(seconds=3)


async def test_a_human_ordered_undo_reactivates_the_key_and_is_audited(env: WorkflowEnvironment) -> None:
    world = drill_world(baseline=usual_baseline())
    contained = await run(env, world, leaked_key_call())
    request = UndoRequest(
        run_workflow_id=contained.workflow_id,
        requested_by="secops-alice",
        note="the key belonged to a pentest",
    )

    queue = f"test-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[UndoRun], activities=world.activities()):
        undone = await env.client.execute_workflow(
            UndoRun.run, request, id=undo_workflow_id(contained.workflow_id), task_queue=queue
        )

    assert undone.outcome == Outcome.ROLLED_BACK
    [reactivated] = world.called("iam.reactivate_access_key")
    assert reactivated.state["status"] == "Active"
    assert reactivated.action.params["target"]["access_key_id"] == KEY
    ordered = [e for e in world.audit if e.workflow_id == undo_workflow_id(contained.workflow_id)]
    assert {e.actor for e in ordered} == {"secops-alice"}


async def test_a_run_replays_deterministically_with_its_background_audit_writes(
    env: WorkflowEnvironment,
) -> None:
    world = drill_world(baseline=usual_baseline())
    event = leaked_key_call()
    await run(env, world, event)

    history = await env.client.get_workflow_handle(security_workflow_id(event)).fetch_history()

    await Replayer(workflows=[SecurityLoop], data_converter=pydantic_data_converter).replay_workflow(history)

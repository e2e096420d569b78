"""Escalation chains and channels: who is asked, where, and what happens when nobody answers."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from suture.identity import reliability_workflow_id
from suture.models import (
    AlertNotice,
    ChannelDelivery,
    ChannelEvent,
    ChannelKind,
    ChannelReceipt,
    LoopResult,
    Outcome,
    ReliabilityLoopInput,
    Verdict,
)
from tests.workflow.fakes import FakeWorld, load_test_policies
from tests.workflow.test_reliability_loop import alert
from workflows.reliability import ReliabilityLoop

pytestmark = pytest.mark.asyncio(loop_scope="module")

POLICY = """
policies:
  - name: checkout-latency
    match: {alertname: HighLatency}
    mode: supervised
    min_confidence: 0.7
    signatures:
      - name: regression-after-rollout
        recent_rollout_within: 30m
        confidence: 0.85
    evidence: ['latency{service="$service"}']
    actions:
      - type: k8s.rollback
    verify:
      query: 'latency{service="$service"}'
      condition: '< 0.5'
      window: 30s
    notify:
      channels:
        - {name: slack-oncall, kind: slack, url: "http://slack.invalid/hook"}
        - {name: pager, kind: pagerduty, routing_key: "R0UTING"}
        - {name: hook, kind: webhook, url: "http://hook.invalid/"}
      routes:
        - labels: {team: payments}
          channels: [hook]
    approval:
      tiers:
        - {approvers: [oncall-alice], timeout: 5m, channel: slack-oncall}
        - {approvers: [lead-bob], timeout: 10m, channel: pager}
        - {approvers: [ic-carol], timeout: 15m}
      final: FINAL
"""


@dataclass
class Channels:
    """A fake ``notify.send``: records deliveries; the channels named in ``failing`` refuse."""

    failing: set[str] = field(default_factory=set)
    sent: list[ChannelDelivery] = field(default_factory=list)

    def activity(self) -> Any:
        @activity.defn(name="notify.send")
        async def send(delivery: ChannelDelivery) -> ChannelReceipt:
            if delivery.channel.name in self.failing:
                raise ApplicationError("503 from the receiver", type="EscalationRefused", non_retryable=True)
            self.sent.append(delivery)
            return ChannelReceipt(channel=delivery.channel.name, kind=delivery.channel.kind, status=200)

        return send

    def to(self, name: str) -> list[ChannelDelivery]:
        return [delivery for delivery in self.sent if delivery.channel.name == name]


def world_with(tmp_path: Path, final: str = "abort", **kwargs: Any) -> FakeWorld:
    return FakeWorld(policies=load_test_policies(tmp_path, POLICY.replace("FINAL", final)), **kwargs)


async def start(
    env: WorkflowEnvironment, world: FakeWorld, channels: Channels, notice: AlertNotice | None = None
) -> tuple[WorkflowHandle, Worker]:
    queue = f"test-{uuid.uuid4()}"
    worker = Worker(
        env.client,
        task_queue=queue,
        workflows=[ReliabilityLoop],
        activities=[*world.activities(), channels.activity()],
    )
    notice = notice or alert()
    handle = await env.client.start_workflow(
        ReliabilityLoop.run,
        ReliabilityLoopInput(alert=notice),
        id=reliability_workflow_id(notice),
        task_queue=queue,
    )
    return handle, worker


async def until_tier(handle: WorkflowHandle, tier: int) -> Any:
    for _ in range(400):
        status = await handle.query(ReliabilityLoop.status)
        if status.tier == tier and status.pending_approval:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"the run never reached tier {tier}")


async def test_when_tier_one_is_silent_tier_two_is_asked_on_its_channel_and_its_approver_may_answer(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world, channels = world_with(tmp_path), Channels()
    handle, worker = await start(env, world, channels)
    async with worker:
        first = await until_tier(handle, 1)
        assert first.approvers == ["oncall-alice"] and first.tiers == 3
        assert first.proposed_actions == ["k8s.rollback on shop/checkout"]
        await env.sleep(6 * 60)
        second = await until_tier(handle, 2)
        await handle.signal("approve", {"approver": "lead-bob", "note": "go"})
        result: LoopResult = await handle.result()
    assert second.approvers == ["oncall-alice", "lead-bob"]
    assert second.deadline is not None and first.deadline is not None and second.deadline > first.deadline
    assert second.tier_history[:2] == [
        second.tier_history[0],
        "tier 1 timed out",
    ] and second.tier_history[0].startswith("tier 1/3: oncall-alice asked until")
    assert result.outcome == Outcome.RESOLVED and result.approver == "lead-bob"
    assert [d.briefing.tier for d in channels.to("slack-oncall")] == [1]
    assert [(d.briefing.tier, d.event) for d in channels.to("pager")] == [
        (2, ChannelEvent.TRIGGER),
        (2, ChannelEvent.RESOLVE),
    ]
    steps = [entry.step for entry in world.audit]
    assert steps.count("awaiting_approval") == 2 and "tier_timed_out" in steps


async def test_a_later_tier_cannot_answer_before_its_turn(env: WorkflowEnvironment, tmp_path: Path) -> None:
    world, channels = world_with(tmp_path), Channels()
    handle, worker = await start(env, world, channels)
    async with worker:
        await until_tier(handle, 1)
        await handle.signal("approve", {"approver": "ic-carol"})
        await handle.signal("reject", {"approver": "oncall-alice", "note": "not now"})
        result: LoopResult = await handle.result()
    assert result.outcome == Outcome.REJECTED and result.approver == "oncall-alice"
    assert "approval_ignored" in [entry.step for entry in world.audit]


async def test_when_every_tier_times_out_final_abort_hands_over_and_does_nothing(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world, channels = world_with(tmp_path), Channels()
    handle, worker = await start(env, world, channels)
    async with worker:
        result: LoopResult = await handle.result()
    assert result.outcome == Outcome.ESCALATED and result.actions == []
    assert "3 approval tiers" in result.reason
    finals = [entry.detail for entry in world.audit if entry.step == "final_fallback"]
    assert finals and "abort" in finals[0]
    assert world.called("k8s.rollback_deployment") == []


async def test_when_every_tier_times_out_act_if_reversible_takes_the_reversible_action(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world, channels = world_with(tmp_path, final="act_if_reversible"), Channels()
    handle, worker = await start(env, world, channels)
    async with worker:
        result: LoopResult = await handle.result()
    assert result.outcome == Outcome.RESOLVED and result.verdict == Verdict.HEALTHY
    assert result.human_touched is False and result.approver is None
    assert len(world.called("k8s.rollback_deployment")) == 1
    finals = [entry.detail for entry in world.audit if entry.step == "final_fallback"]
    assert finals and "act_if_reversible" in finals[0]


async def test_a_page_opened_while_waiting_is_resolved_when_the_run_resolves(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world, channels = world_with(tmp_path), Channels()
    handle, worker = await start(env, world, channels)
    async with worker:
        await until_tier(handle, 1)
        await env.sleep(6 * 60)
        await until_tier(handle, 2)
        await handle.signal("approve", {"approver": "oncall-alice"})
        result: LoopResult = await handle.result()
    assert result.outcome == Outcome.RESOLVED
    pages = channels.to("pager")
    assert [page.event for page in pages] == [ChannelEvent.TRIGGER, ChannelEvent.RESOLVE]
    assert {page.briefing.workflow_id for page in pages} == {result.workflow_id}


async def test_a_failing_channel_falls_back_to_the_next_and_the_fallback_is_audited(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    world, channels = world_with(tmp_path, verdicts=[Verdict.UNHEALTHY]), Channels(failing={"slack-oncall"})
    handle, worker = await start(env, world, channels)
    async with worker:
        await until_tier(handle, 1)
        await handle.signal("approve", {"approver": "oncall-alice"})
        result: LoopResult = await handle.result()
    assert result.outcome == Outcome.ESCALATED
    fallbacks = [entry.detail for entry in world.audit if entry.step == "notify_fallback"]
    assert len(fallbacks) == 2, fallbacks  # the tier-1 request and the hand-over
    assert all("slack-oncall failed" in detail and "falling back to pager" in detail for detail in fallbacks)
    hand_over = [d for d in channels.to("pager") if d.briefing.tier is None]
    assert len(hand_over) == 1 and world.briefings == [], "the default webhook is not used"


async def test_the_alerts_team_label_routes_the_briefing(env: WorkflowEnvironment, tmp_path: Path) -> None:
    world, channels = world_with(tmp_path, verdicts=[Verdict.UNHEALTHY]), Channels()
    notice = alert()
    notice.labels["team"] = "payments"
    handle, worker = await start(env, world, channels, notice)
    async with worker:
        await until_tier(handle, 1)
        await handle.signal("approve", {"approver": "oncall-alice"})
        result: LoopResult = await handle.result()
    assert result.outcome == Outcome.ESCALATED
    hand_overs = [d for d in channels.sent if d.briefing.tier is None]
    assert [d.channel.name for d in hand_overs] == ["hook"]
    assert hand_overs[0].channel.kind == ChannelKind.WEBHOOK


async def test_the_hand_over_briefing_is_complete(env: WorkflowEnvironment, tmp_path: Path) -> None:
    world, channels = world_with(tmp_path, verdicts=[Verdict.UNHEALTHY]), Channels()
    handle, worker = await start(env, world, channels)
    async with worker:
        await until_tier(handle, 1)
        await handle.signal("approve", {"approver": "oncall-alice"})
        result: LoopResult = await handle.result()
    briefing = result.briefing
    assert briefing is not None
    run = result.workflow_id
    assert briefing.service == "shop/checkout" and briefing.scope == "shop/checkout"
    assert briefing.impact == "checkout p99 above 500 ms"
    assert briefing.labels["alertname"] == "HighLatency"
    assert briefing.evidence and briefing.evidence_age_s is not None and briefing.evidence_age_s >= 0
    assert briefing.recent_changes, "the rollout that preceded the alert"
    assert briefing.automation.startswith("suture did: k8s.rollback on shop/checkout (undone)")
    assert briefing.confidence is not None
    assert briefing.confidence.value == 0.85 and briefing.confidence.required == 0.7
    assert briefing.confidence.lowered_by == []
    assert any("undone" in step for step in briefing.next_steps)
    assert briefing.commands is not None
    assert briefing.commands.status == f"temporal workflow query --workflow-id {run} --name status"
    assert briefing.commands.approve == "", "nothing waits for an approval any more"
    assert briefing.written_at is not None
    request = channels.to("slack-oncall")[0].briefing
    assert request.commands is not None
    assert request.commands.approve == f"suture approve {run} --as oncall-alice"
    assert request.commands.reject == f"suture reject {run} --as oncall-alice"
    assert request.approvers == ["oncall-alice"] and request.deadline is not None
    assert request.would_have_done == ["k8s.rollback on shop/checkout"]


async def test_a_supervised_policy_without_tiers_asks_on_its_routed_channel(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    text = POLICY.split("    approval:")[0] + "    approval: {approvers: [oncall-alice], timeout: 10m}\n"
    world, channels = FakeWorld(policies=load_test_policies(tmp_path, text)), Channels()
    notice = alert()
    notice.labels["team"] = "payments"
    handle, worker = await start(env, world, channels, notice)
    async with worker:
        for _ in range(400):
            if channels.sent:
                break
            await asyncio.sleep(0.05)
        await handle.signal("approve", {"approver": "oncall-alice"})
        result: LoopResult = await handle.result()
    assert result.outcome == Outcome.RESOLVED
    [request] = channels.sent
    assert request.channel.name == "hook" and request.briefing.deadline is not None
    assert request.briefing.commands is not None
    assert request.briefing.commands.approve == f"suture approve {result.workflow_id} --as oncall-alice"
    assert request.briefing.next_steps[0].startswith("read the evidence, then approve or reject")

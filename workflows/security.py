"""The security loop: an AWS audit event in, one narrowly scoped containment out, verified.

detect (the event's signal, pure) → pin the policy → assess (a credential's
baseline or a policy document, read by activities; the risk score is pure) →
plan under the Containment Scope Index → approve when supervised → contain (saga)
→ verify by re-reading AWS after the propagation window → resolved, or escalate.

Containment is a race, so the containing action comes after as few round trips
as possible: the audit entries written before it are queued and written, in
order, by a background task while the loop goes on; any later audit entry waits
for the queue, so the trail keeps its order.

Unlike the reliability loop, a failed action or verification is not undone:
undoing a containment re-opens the exposure. The loop escalates and leaves the
containment in place; its compensations stay in the run's result for a human to
order (``suture undo``). The same holds for a kill switch: pulled before the first
containment, the run ends ``suppressed``; pulled between two, the containment
already done stays in place and the run escalates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.loop import VERIFY, Paused, RemediationLoop

with workflow.unsafe.imports_passed_through():
    from policies.actions import action_spec
    from policies.actions import aws as aws_declared
    from policies.containment import plan_containment
    from policies.detection import (
        Finding,
        assess_bucket,
        assess_credential,
        assess_ingress,
        assess_policy_attachment,
        labels_of,
        needs_baseline,
        policy_needing_document,
        signal_of,
    )
    from policies.models import PolicyQuery, PolicySelection
    from policies.plan import Plan, PlanOutcome
    from policies.scope import CONTAINMENT_SCOPE_INDEX, SignalType
    from policies.security_policy import SecurityPolicy
    from policies.trust import SHADOW, TRUST_EVIDENCE, IncidentSignature, ShadowScore, Trust, TrustQuery
    from policies.whatif import input_evidence
    from suture.errors import NON_RETRYABLE
    from suture.identity import security_subject
    from suture.models import (
        ApprovalAnswer,
        AwsEvent,
        Briefing,
        ClaimResult,
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
        PolicyDocument,
        PolicyDocumentRequest,
        RoleDependents,
        RoleDependentsRequest,
        SecurityLoopInput,
        TargetClaim,
        TargetRelease,
        Verdict,
    )

SECURITY_SHADOW = "security-shadow-score"
"""Patch marker: a security dry run is watched and scored since this."""
READ = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE,
)
"""Reads that decide whether to act: a few quick retries, then the run escalates instead of waiting."""


@workflow.defn(name="SecurityLoop")
class SecurityLoop(RemediationLoop):
    loop = Loop.SECURITY

    def __init__(self) -> None:
        super().__init__()
        self.event: AwsEvent | None = None
        self.finding: Finding | None = None
        self._queued: list[tuple[str, str, list[Evidence]]] = []
        self._writer: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, request: SecurityLoopInput) -> LoopResult:
        event = self.event = request.event
        self.subject = security_subject(event)
        self.timeline.detected = event.received_at
        self.add_evidence(_event_evidence(event))
        self.audit_later(
            "detected",
            f"{event.event_name} by {event.principal} in {event.account}/{event.region}",
            [*self.evidence[-1:], input_evidence(event)],  # kept for `suture policy backtest`
        )
        signal = signal_of(event)
        if signal is None:
            return await self._suppress(
                f"no detection rule applies to {event.event_name} by a {event.principal.type} principal"
            )
        selection = await self.call(
            "policy.select", PolicyQuery(loop=self.loop, labels=labels_of(event, signal)), PolicySelection
        )
        policy = selection.policy
        if not isinstance(policy, SecurityPolicy):
            return await self._suppress(
                f"no security policy governs {signal} in account {event.account} ({event.region}); "
                f"{selection.considered} policies considered, the event is recorded and ignored"
            )
        self.pin(policy)
        assessed = await self._assess(policy, event, signal)
        if isinstance(assessed, str):
            return await self._hand_over(assessed)
        self.finding = assessed
        self.add_evidence(_finding_evidence(assessed, workflow.now()))
        plan = plan_containment(policy, assessed, event.event_id)
        plan = await self._trusted(policy, plan, assessed, event)
        self.mode = plan.mode
        self.index()
        self.timeline.decided = workflow.now()
        self.audit_later("decided", plan.reason, self.evidence[-1:])
        if plan.outcome == PlanOutcome.SUPPRESSED:
            return await self._suppress(plan.reason)
        if plan.outcome == PlanOutcome.DRY_RUN:
            await self.audit("dry_run", "would have done: " + "; ".join(plan.would_have_done))
            if self.trusting() and workflow.patched(SECURITY_SHADOW):
                # A dry-run plan carries no actions; the acting plan names what to watch.
                acting = plan_containment(
                    policy.model_copy(update={"mode": Mode.AUTONOMOUS}), assessed, event.event_id
                )
                if acting.actions:
                    await self._shadow(policy, acting.actions)
            return await self.finish(Outcome.DRY_RUN, plan.reason)
        if plan.outcome == PlanOutcome.ESCALATE:
            return await self._hand_over(
                plan.reason, plan.would_have_done, await self._dependents(event, signal)
            )
        if await self.cap_by_stage(plan.mode) == Mode.DRY_RUN:
            return await self.record_would_have(plan.would_have_done)
        refusal = await self.permission_refusal(plan.actions)
        if refusal is not None:
            return await self._hand_over(refusal, plan.would_have_done)
        return await self._contain(policy, plan)

    # --- steps ------------------------------------------------------------------------

    async def _assess(self, policy: SecurityPolicy, event: AwsEvent, signal: SignalType) -> Finding | str:
        """The finding, or why it cannot be judged."""
        rules = policy.detection
        if signal == SignalType.INGRESS_OPENED:
            return assess_ingress(event, rules)
        if signal == SignalType.BUCKET_PUBLIC_ACCESS:
            return assess_bucket(event, rules)
        if signal == SignalType.POLICY_ATTACHED:
            arn = policy_needing_document(event, rules)
            document = None
            if arn:
                request = PolicyDocumentRequest(account=event.account, region=event.region, policy_arn=arn)
                try:
                    document = (
                        await self.call(aws_declared.policy_document, request, PolicyDocument, READ)
                    ).document
                except ActivityError as error:
                    return (
                        f"cannot read {arn} to judge whether it grants admin rights: {error.cause or error}"
                    )
            return assess_policy_attachment(event, rules, document)
        assert needs_baseline(signal)
        return await self._assess_credential(policy, event)

    async def _assess_credential(self, policy: SecurityPolicy, event: AwsEvent) -> Finding | str:
        rules = policy.detection
        principal = event.principal
        by_role = principal.type == "AssumedRole"
        # The baseline ends a gap before the event, so the intruder's own first calls are not in it.
        query = CredentialQuery(
            account=event.account,
            region=event.region,
            access_key_id="" if by_role else principal.access_key_id,
            role_arn=principal.role_arn if by_role else "",
            start=event.event_time - timedelta(seconds=rules.baseline),
            end=event.event_time - timedelta(seconds=rules.baseline_gap),
            exclude_event_ids=[event.cloudtrail_event_id] if event.cloudtrail_event_id else [],
        )
        try:
            baseline = await self.call(aws_declared.credential_activity, query, CredentialActivity, READ)
        except ActivityError as error:
            return f"cannot read the baseline of {principal}: {error.cause or error}"
        self.add_evidence(
            Evidence(
                source=baseline.source,
                query=f"calls by {query.access_key_id or query.role_arn} in the baseline window",
                value=baseline.calls,
                at=workflow.now(),
                note=(
                    f"sources {', '.join(baseline.source_ips[:5]) or 'none'}; "
                    f"APIs {', '.join(baseline.event_names[:8]) or 'none'}"
                ),
            )
        )
        return assess_credential(event, rules, baseline)

    async def _trusted(self, policy: SecurityPolicy, plan: Plan, finding: Finding, event: AwsEvent) -> Plan:
        """Earned trust: the finding's signature assessed and audited, the plan through the trust gate."""
        if not self.trusting():
            return plan
        signature = IncidentSignature(
            loop=self.loop,
            alert=str(finding.signal),
            service=self.subject,
            change=event.event_name,
            diagnosis=str(finding.signal),
        )
        actions = [action.type for action in plan.actions] or [step.type for step in policy.actions]
        query = TrustQuery(
            loop=self.loop,
            policy=policy.name,
            actions=actions,
            targets=[str(action.target) for action in plan.actions],
            signature=signature,
            declared=True,
            trust=policy.trust or Trust(),
            at=workflow.now(),
        )
        await self.assess_trust(query, policy)
        return await self.apply_trust(plan)

    async def _dependents(self, event: AwsEvent, signal: SignalType) -> list[str]:
        if signal != SignalType.ROLE_CREDENTIAL_ANOMALY:
            return []
        request = RoleDependentsRequest(
            account=event.account, region=event.region, role_arn=event.principal.role_arn
        )
        try:
            return (await self.call(aws_declared.role_dependents, request, RoleDependents, READ)).dependents
        except ActivityError as error:
            return [f"unknown: the role's dependents could not be read ({error.cause or error})"]

    async def _contain(self, policy: SecurityPolicy, plan: Plan) -> LoopResult:
        claimed: list[PlannedAction] = []
        refused: list[str] = []
        try:
            for action in plan.actions:
                claim = await self.call(
                    "audit.claim_target",
                    TargetClaim(
                        target=str(action.target),
                        workflow_id=workflow.info().workflow_id,
                        cooldown_s=policy.cooldown,
                    ),
                    ClaimResult,
                )
                if claim.granted:
                    claimed.append(action)
                else:
                    refused.append(f"{action.target}: {claim.reason}")
            if not claimed:
                return await self._suppress("; ".join(refused))
            if plan.mode == Mode.SUPERVISED:
                assert policy.approval is not None
                answer = await self.await_approval(policy.approval, claimed)
                if answer == ApprovalAnswer.TIMEOUT:
                    waited = (
                        f"none of the {len(policy.approval.tiers)} approval tiers answered in time"
                        if policy.approval.tiers
                        else f"nobody approved within {policy.approval.timeout:.0f}s"
                    )
                    return await self._hand_over(
                        f"{waited} ({plan.reason})",
                        plan.would_have_done,
                    )
                if answer == ApprovalAnswer.REJECT:
                    return await self.finish(Outcome.REJECTED, f"rejected by {self.approver}")
            failure = await self.act(claimed)
            contained_at = workflow.now()
            if isinstance(failure, Paused) and not self.actions:
                return await self._suppress(failure.reason)
            if isinstance(failure, Paused):
                return await self._hand_over(
                    f"{failure.reason}; the containment done so far is left in place", plan.would_have_done
                )
            if failure is not None:
                return await self._hand_over(
                    f"{failure}; the containment done so far is left in place", plan.would_have_done
                )
            return await self._verify(policy, claimed, contained_at, plan)
        finally:
            for action in claimed:
                await self.call_void(
                    "audit.release_target",
                    TargetRelease(
                        target=str(action.target),
                        workflow_id=workflow.info().workflow_id,
                        acted=bool(self.actions),
                    ),
                )

    async def _shadow(self, policy: SecurityPolicy, actions: list[PlannedAction]) -> None:
        """Shadow scoring: after a dry run, watch whether a human contains the same scope.

        An audit event never clears by itself, so the score is "right" (someone contained
        every resource the plan named within the window) or "undecided".
        """
        window = (policy.trust or Trust()).shadow_window
        self.step = "watching"
        await workflow.sleep(timedelta(seconds=window))
        reports = []
        for action in actions:
            # Contained "now": what is read is the resource's state, not use before it changed.
            check = ContainmentCheck(action=action, contained_at=workflow.now(), grace_s=policy.verify.grace)
            try:
                reports.append(await self.call(action_spec(action.type).verify, check, HealthReport, VERIFY))
            except ActivityError as error:
                reports.append(HealthReport(verdict=Verdict.UNKNOWN, reason=str(error.cause or error)))
        targets = ", ".join(str(action.target) for action in actions)
        if all(report.verdict == Verdict.HEALTHY for report in reports):
            score = ShadowScore.RIGHT
            why = f"within {window:.0f}s someone contained {targets}: acting would have been right"
        else:
            score = ShadowScore.UNDECIDED
            why = f"within {window:.0f}s nobody contained {targets}: " + "; ".join(r.reason for r in reports)
        evidence = Evidence(source=TRUST_EVIDENCE, query=SHADOW, value=str(score), at=workflow.now())
        await self.audit(SHADOW, why, [evidence])

    async def _verify(
        self,
        policy: SecurityPolicy,
        actions: list[PlannedAction],
        contained_at: datetime,
        plan: Plan,
    ) -> LoopResult:
        """Wait out the propagation window on a durable timer, then re-read every contained resource."""
        self.step = "verifying"
        await workflow.sleep(timedelta(seconds=policy.verify.window))
        # Runs recorded before each action had its own verification asked one activity for all.
        per_action = workflow.patched("per-action-verify")
        reports = []
        for action in actions:
            check = ContainmentCheck(action=action, contained_at=contained_at, grace_s=policy.verify.grace)
            verify = action_spec(action.type).verify if per_action else aws_declared.verify_containment
            try:
                report = await self.call(verify, check, HealthReport, VERIFY)
            except ActivityError as error:
                report = HealthReport(
                    verdict=Verdict.UNKNOWN,
                    reason=f"re-reading {action.target} failed: {error.cause or error}",
                )
            reports.append(report)
            for item in report.evidence:
                self.add_evidence(item)
        self.timeline.verified = workflow.now()
        verdict = self.verdict = _worst(report.verdict for report in reports)
        reason = "; ".join(report.reason for report in reports)
        await self.audit(
            "verified", f"{verdict}: {reason}", [e for report in reports for e in report.evidence]
        )
        if verdict == Verdict.HEALTHY:
            await self.audit("resolved", reason)
            return await self.finish(Outcome.RESOLVED, reason, verdict=verdict)
        return await self._hand_over(
            f"the containment did not hold ({reason}); it is left in place and not repeated",
            plan.would_have_done,
            verdict=verdict,
        )

    async def _suppress(self, reason: str) -> LoopResult:
        await self.audit("suppressed", reason)
        return await self.finish(Outcome.SUPPRESSED, reason)

    async def _hand_over(
        self,
        reason: str,
        would_have_done: list[str] | None = None,
        dependents: list[str] | None = None,
        verdict: Verdict | None = None,
    ) -> LoopResult:
        event, finding = self.event, self.finding
        assert event is not None
        scope = CONTAINMENT_SCOPE_INDEX[finding.signal] if finding else None
        targets = ", ".join(str(t.target) for t in finding.targets) if finding else ""
        what = finding.signal if finding else event.event_name
        briefing = Briefing(
            workflow_id=workflow.info().workflow_id,
            loop=self.loop,
            title=f"{what} in {event.account}: suture stopped and needs a human",
            subject=self.subject,
            impact=finding.summary if finding else f"{event.event_name} by {event.principal}",
            scope=targets or (f"narrowest boundary: {scope.boundary}" if scope else self.subject),
            reason=reason,
            evidence=self.evidence[-20:],
            would_have_done=would_have_done or [],
            actions_taken=self.actions,
            dependents=dependents or [],
            service=targets or self.subject,
            severity="critical" if self.actions or would_have_done else "warning",
        )
        await self.escalate(briefing)
        return await self.finish(Outcome.ESCALATED, reason, verdict=verdict, briefing=briefing)

    # --- audit off the critical path ------------------------------------------------

    def audit_later(self, step: str, detail: str, evidence: list[Evidence] | None = None) -> None:
        """Queue an audit entry; a background task writes the queue in order."""
        self.step = step
        self._queued.append((step, detail, evidence or []))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())

    async def audit_trust(self, step: str, detail: str, evidence: list[Evidence]) -> None:
        self.audit_later(step, detail, evidence)

    async def audit(
        self, step: str, detail: str, evidence: list[Evidence] | None = None, actor: str = "suture"
    ) -> None:
        """Write an audit entry after the queued ones, so the trail keeps its order."""
        await self._flush()
        await super().audit(step, detail, evidence, actor)

    async def finish(self, outcome: Outcome, reason: str, **extra: Any) -> LoopResult:
        await self._flush()
        return await super().finish(outcome, reason, **extra)

    async def _flush(self) -> None:
        if self._writer is not None:
            await self._writer

    async def _write_queued(self) -> None:
        while self._queued:
            step, detail, evidence = self._queued.pop(0)
            shown = self.step
            await super().audit(step, detail, evidence)
            if self.step == step:  # nothing newer happened meanwhile; show where the loop is
                self.step = shown


def _event_evidence(event: AwsEvent) -> Evidence:
    return Evidence(
        source="cloudtrail",
        query=f"{event.event_source} {event.event_name}",
        value=event.error_code or "success",
        at=event.event_time,
        note=f"by {event.principal} from {event.source_ip or 'unknown'} (event {event.event_id})",
    )


def _finding_evidence(finding: Finding, now: datetime) -> Evidence:
    return Evidence(
        source="suture.detection",
        query=str(finding.signal),
        value=finding.risk,
        at=now,
        note="; ".join(finding.reasons)[:500],
    )


def _worst(verdicts: Iterable[Verdict]) -> Verdict:
    found = set(verdicts)
    for verdict in (Verdict.UNHEALTHY, Verdict.UNKNOWN):
        if verdict in found:
            return verdict
    return Verdict.HEALTHY if found else Verdict.UNKNOWN

"""The resource loop: a scheduled sweep finds waste, one child run per candidate reclaims it, verified.

``ResourceSweep`` is what the Temporal Schedule starts. It pins the resource
policies, reads what the loop acted on today (the daily cap holds across sweeps),
has one activity evaluate the whole fleet in a few batched queries, applies the
gates (tag coverage, daily cap; what may not act is kept as dry-run with the
reason), asks for tags on untagged resources with one escalation (not again for
the same list within a day), and starts one ``ResourceLoop`` per candidate, never
per workload. A child's workflow ID is its target and the sweep, so every run
keeps an audit trail of its own; a candidate already in hand (its target's lock
held by a run waiting for approval, acting or verifying) is left alone, so it is
never acted on twice at once. The sweep does not wait for its children: an
approval may take hours and the next sweep must not be skipped for it.

``ResourceLoop`` is the remediation skeleton applied to one candidate: dry-run
records what it would have done and what that would save; otherwise claim the
target (a security containment holding it blocks the action), approve when
supervised, act with the undo registered first, then verify after the window
that the resource holds its new state (and, if the policy gives one, that its
dependents stay healthy). A change that does not hold is undone and escalated.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.loop import VERIFY, Paused, RemediationLoop

with workflow.unsafe.imports_passed_through():
    from policies.actions.declaration import activity_name
    from policies.plan import Plan, PlanOutcome
    from policies.registry import action_spec
    from policies.resource import ACTING, GatedCandidate, ResourcePolicy, gate_sweep
    from policies.trust import SHADOW, TRUST_EVIDENCE, IncidentSignature, ShadowScore, Trust, TrustQuery
    from suture import search_attributes as sa
    from suture.fleet import (
        ENV_TAG,
        TAGS_REQUESTED,
        ActedToday,
        ActedTodayQuery,
        CandidateRun,
        Finding,
        FleetAnalysis,
        FleetQuery,
        InHand,
        InHandQuery,
        ResourceCheck,
        ResourceLoopInput,
        ResourcePolicySet,
        SweepInput,
        SweepResult,
        TagRequestQuery,
        TagRequestSeen,
        UtilisationQuery,
        UtilisationSeen,
    )
    from suture.models import (
        ApprovalAnswer,
        Briefing,
        ClaimResult,
        Evidence,
        HealthReport,
        Loop,
        LoopResult,
        Mode,
        Outcome,
        PlannedAction,
        Target,
        TargetClaim,
        TargetRelease,
        Verdict,
    )

ResultT = TypeVar("ResultT")
SCAN = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=["PrometheusQueryRejected", "PermissionDenied", "PolicyError"],
)

TAG_REQUEST_QUIET = timedelta(days=1)
"""An hourly sweep asks again for the same untagged list at most once in this long."""
RESOURCE_SHADOW = "resource-shadow-score"
"""Patch marker: a resource policy's own dry runs are watched and scored since this."""
RUN_PER_SWEEP = "resource-run-ids-per-sweep"
"""Patch marker: sweeps recorded before it named a child by its target alone, so a later run on the
same resource reused the ID (and its audit sequence); now the ID adds the sweep's time and run, and a
target another run holds is left alone by asking the target lock."""
TAGS_ONCE_A_DAY = "tag-requests-once-a-day"
"""Patch marker: sweeps recorded before it escalated for tags every time."""


def resource_workflow_id(target: Target) -> str:
    """The stem of every run's ID on one resource; a sweep adds its time and run (``-<time>-<run>``)."""
    return f"resource-{target.kind}-{target.scope}-{target.name}".replace("/", "-")


@workflow.defn(name="ResourceSweep")
class ResourceSweep(RemediationLoop):
    loop = Loop.RESOURCE

    @workflow.run
    async def run(self, request: SweepInput) -> SweepResult:
        sweep_id = workflow.info().workflow_id
        # Two sweeps may start in one second (the schedule's, `suture sweep --now`): their run IDs differ.
        self.swept_at = f"{workflow.now():%Y%m%dT%H%M%S}-{workflow.info().run_id[:8]}"
        self.subject = "sweep " + (",".join(f"{k}={v}" for k, v in sorted(request.scope.items())) or "all")
        now = workflow.now()
        midnight = datetime(now.year, now.month, now.day, tzinfo=now.tzinfo)
        policies = await self._local(
            "policy.resource_set", ActedTodayQuery(since=midnight), ResourcePolicySet
        )
        acted = await self._local("resource.acted_today", ActedTodayQuery(since=midnight), ActedToday)
        analysis: FleetAnalysis = await workflow.execute_activity(
            "resource.analyse_fleet",
            FleetQuery(
                scope=request.scope, policies=policies.policies, sweep_id=sweep_id, acted_today=acted.targets
            ),
            result_type=FleetAnalysis,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=SCAN,
        )
        gates = gate_sweep(analysis.fleet_size, analysis.tagged, analysis.findings, analysis.acted_today)
        await self.audit("swept", f"{gates.reason}; classes: {analysis.counts}")
        escalated = False
        if analysis.untagged:
            escalated = await self._ask_for_tags(analysis)
        pinned = {policy["name"]: policy for policy in policies.policies}
        in_hand = InHand()
        if workflow.patched(RUN_PER_SWEEP):
            targets = [str(candidate.finding.action.target) for candidate in gates.candidates]
            in_hand = await self._local("resource.in_hand", InHandQuery(targets=targets), InHand)
        starts = [
            self._start_candidate(
                candidate,
                pinned,
                sweep_id,
                in_hand.holders.get(str(candidate.finding.action.target)),
            )
            for candidate in gates.candidates
        ]
        runs = list(await asyncio.gather(*starts))
        if in_hand.holders:
            left = [f"{target} ({holder})" for target, holder in sorted(in_hand.holders.items())]
            await self.audit(
                "left_in_hand", f"{len(left)} candidates another run holds: " + ", ".join(left[:20])
            )
        return SweepResult(
            workflow_id=sweep_id,
            fleet_size=analysis.fleet_size,
            tag_coverage=gates.tag_coverage,
            acted_today=analysis.acted_today,
            daily_cap=gates.daily_cap,
            counts=analysis.counts,
            candidates=runs,
            escalated=escalated,
            reason=gates.reason,
        )

    async def _local(self, name: str, arg: object, result_type: type[ResultT]) -> ResultT:
        result: ResultT = await workflow.execute_local_activity(
            name, arg, result_type=result_type, start_to_close_timeout=timedelta(seconds=30)
        )
        return result

    async def _start_candidate(
        self,
        candidate: GatedCandidate,
        pinned: dict[str, dict[str, Any]],
        sweep_id: str,
        holder: str | None,
    ) -> CandidateRun:
        """Start the candidate's run; not when ``holder``, another run, has its target in hand."""
        finding, mode, note = candidate.finding, candidate.mode, candidate.note
        target = finding.action.target
        child_id = resource_workflow_id(target)
        if workflow.patched(RUN_PER_SWEEP):
            child_id = f"{child_id}-{self.swept_at}"
        run = CandidateRun(
            target=str(target),
            workflow_id=child_id,
            mode=mode,
            savings_usd_month=finding.savings_usd_month,
            note=note,
        )
        if holder is not None:
            run.started, run.note = False, f"already in hand: {holder} holds it"
            return run
        attributes = None
        if workflow.info().typed_search_attributes.get(sa.SUTURE_LOOP) is not None:
            attributes = TypedSearchAttributes(
                [
                    SearchAttributePair(sa.SUTURE_LOOP, str(Loop.RESOURCE)),
                    SearchAttributePair(sa.SUTURE_SERVICE, str(target)),
                ]
            )
        try:
            await workflow.start_child_workflow(
                "ResourceLoop",
                ResourceLoopInput(
                    finding=finding,
                    sweep_id=sweep_id,
                    policy=pinned[finding.policy],
                    mode=mode,
                    reason_for_mode=note,
                ),
                id=child_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                search_attributes=attributes,
            )
        except WorkflowAlreadyStartedError:
            run.started, run.note = False, "already in hand: a run on this resource is still open"
        return run

    async def _ask_for_tags(self, analysis: FleetAnalysis) -> bool:
        """One escalation asking for tags; False when the same list was asked about within a day."""
        if workflow.patched(TAGS_ONCE_A_DAY):
            listed = "\n".join([self.subject, *sorted(analysis.untagged)]).encode()
            digest = hashlib.sha256(listed).hexdigest()[:16]
            seen = await self._local(
                "resource.tags_asked",
                TagRequestQuery(since=workflow.now() - TAG_REQUEST_QUIET, digest=digest),
                TagRequestSeen,
            )
            count = analysis.fleet_size - analysis.tagged
            if seen.asked_at is not None:
                await self.audit(
                    "tags_already_requested",
                    f"{count} untagged resources, the same list asked about at {seen.asked_at.isoformat()}",
                )
                return False
            await self.audit(TAGS_REQUESTED, f"{count} untagged resources [{digest}]")
        shown = ", ".join(analysis.untagged[:20])
        more = len(analysis.untagged) - 20
        coverage = analysis.tagged / analysis.fleet_size if analysis.fleet_size else 1.0
        briefing = Briefing(
            workflow_id=workflow.info().workflow_id,
            loop=self.loop,
            title=f"{analysis.fleet_size - analysis.tagged} resources lack owner/env tags: please tag them",
            subject=self.subject,
            impact=f"tag coverage {coverage:.1%}; below 95% the resource loop takes no destructive action",
            scope=shown + (f" and {more} more" if more > 0 else ""),
            reason="untagged resources cannot be routed to an owner; add the `owner` and `env` tags",
            would_have_done=[],
        )
        await self.escalate(briefing)
        return True


@workflow.defn(name="ResourceLoop")
class ResourceLoop(RemediationLoop):
    loop = Loop.RESOURCE

    @workflow.run
    async def run(self, request: ResourceLoopInput) -> LoopResult:
        finding = request.finding
        policy = ResourcePolicy.model_validate(request.policy)
        action = finding.action.model_copy(update={"mode": request.mode})
        self.subject = str(action.target)
        self.timeline.detected = workflow.now()
        self.pin(policy)
        self.mode = request.mode
        self.index()
        money = (
            f"burns ${finding.burn_usd_hour:.2f}/h; "
            f"{action.type} saves ${finding.savings_usd_month:,.2f}/month"
        )
        await self.audit("detected", f"{finding.reason}; {money}")
        would = [f"{action_spec(action.type).summary} ({action.type} on {action.target}, {money})"]
        self.timeline.decided = workflow.now()
        if request.mode in ACTING:
            gated = await self._trusted(policy, finding, action, would)
            if gated.outcome == PlanOutcome.ESCALATE:
                return await self._hand_over(gated.reason, would)
            action = gated.actions[0] if gated.actions else action
        if action.mode in ACTING:
            production = finding.workload.labels.get(ENV_TAG) in policy.production
            if await self.cap_by_stage(action.mode, in_scope=not production) not in ACTING:
                return await self.record_would_have(would)
            refusal = await self.permission_refusal([action])
            if refusal is not None:
                return await self._hand_over(refusal, would)
        if request.mode not in ACTING:
            why = request.reason_for_mode or f"policy {policy.name} is in {request.mode}"
            await self.audit("dry_run", f"would have done: {would[0]} ({why})")
            # Only a policy's own dry run is watched: a candidate held back by the cap or the tag
            # gate says nothing about whether the policy should be promoted.
            if not request.reason_for_mode and self.trusting() and workflow.patched(RESOURCE_SHADOW):
                await self._shadow(policy, action, finding)
            return await self.finish(
                Outcome.DRY_RUN, f"{why}; would have saved ${finding.savings_usd_month:,.2f}/month"
            )
        await self.audit("decided", f"{request.mode}: {would[0]}")
        workflow_id = workflow.info().workflow_id
        claim = await self.call(
            "audit.claim_target",
            TargetClaim(target=str(action.target), workflow_id=workflow_id, cooldown_s=policy.cooldown),
            ClaimResult,
        )
        if not claim.granted:
            await self.audit("suppressed", claim.reason)
            return await self.finish(Outcome.SUPPRESSED, claim.reason)
        try:
            return await self._reclaim(policy, action, finding.savings_usd_month, would)
        finally:
            await self.call_void(
                "audit.release_target",
                TargetRelease(target=str(action.target), workflow_id=workflow_id, acted=bool(self.actions)),
            )

    async def _trusted(
        self, policy: ResourcePolicy, finding: Finding, action: PlannedAction, would: list[str]
    ) -> Plan:
        """Earned trust on one candidate: overrides, an exception on the target, novelty."""
        plan = Plan(
            outcome=PlanOutcome.ACT,
            mode=action.mode,
            reason=finding.reason,
            actions=[action],
            would_have_done=would,
        )
        if not self.trusting():
            return plan
        signature = IncidentSignature(
            loop=self.loop,
            alert=str(finding.waste),
            service=self.subject,
            change="none",
            diagnosis=finding.policy,
        )
        query = TrustQuery(
            loop=self.loop,
            policy=policy.name,
            actions=[action.type],
            targets=[str(action.target)],
            signature=signature,
            declared=True,
            trust=policy.trust or Trust(),
            at=workflow.now(),
        )
        await self.assess_trust(query, policy)
        return await self.apply_trust(plan)

    async def _reclaim(
        self, policy: ResourcePolicy, action: PlannedAction, savings: float, would: list[str]
    ) -> LoopResult:
        if action.mode == Mode.SUPERVISED:
            assert policy.approval is not None
            answer = await self.await_approval(policy.approval)
            if answer == ApprovalAnswer.TIMEOUT:
                return await self._hand_over(f"nobody approved within {policy.approval.timeout:.0f}s", would)
            if answer != ApprovalAnswer.APPROVE:
                return await self.finish(Outcome.REJECTED, f"rejected by {self.approver}")
        failure = await self.act([action])
        for record in self.actions:
            record.savings_usd_month = savings
        if isinstance(failure, Paused) and not self.actions:
            await self.audit("suppressed", failure.reason)
            return await self.finish(Outcome.SUPPRESSED, failure.reason)
        if failure is not None:
            undo_failures = await self.compensate()
            return await self._hand_over("; ".join([str(failure), *undo_failures]), would)
        report = await self._verify(policy, action)
        if report.verdict == Verdict.HEALTHY:
            await self.audit("resolved", report.reason)
            return await self.finish(
                Outcome.RESOLVED, f"{report.reason}; saving ${savings:,.2f}/month", verdict=report.verdict
            )
        if report.verdict == Verdict.UNKNOWN:
            return await self._hand_over(
                f"verification is inconclusive ({report.reason}); the change is left in place",
                would,
                report.verdict,
            )
        undo_failures = await self.compensate()
        undone = "; ".join(undo_failures) or "the change was undone"
        return await self._hand_over(
            f"the change did not hold ({report.reason}); {undone}", would, report.verdict
        )

    async def _shadow(self, policy: ResourcePolicy, action: PlannedAction, finding: Finding) -> None:
        """Shadow scoring: after a dry run, watch whether someone reclaims it or it gets busy by itself."""
        window = (policy.trust or Trust()).shadow_window
        since = self.timeline.detected or workflow.now()
        self.step = "watching"
        await workflow.sleep(timedelta(seconds=window))
        spec = action_spec(action.type)
        try:
            held = await self.call(
                activity_name(spec.verify), ResourceCheck(action=action), HealthReport, VERIFY
            )
            seen = await self.call(
                "resource.utilisation_since",
                UtilisationQuery(key=finding.workload.key, resource=finding.resource, since=since),
                UtilisationSeen,
                VERIFY,
            )
        except ActivityError as error:
            held, seen = (
                HealthReport(verdict=Verdict.UNKNOWN, reason=str(error.cause or error)),
                UtilisationSeen(),
            )
        bar = policy.rules.idle_below if policy.finding == "idle" else policy.rules.overprovisioned_below
        if held.verdict == Verdict.HEALTHY:
            score = ShadowScore.RIGHT
            why = f"within {window:.0f}s someone did it ({held.reason}): acting would have been right"
        elif seen.p95 is not None and seen.p95 >= bar:
            score = ShadowScore.NOT_HELPFUL
            why = (
                f"it got busy by itself within {window:.0f}s (95th percentile {seen.p95:.1%} >= {bar:.0%}): "
                "acting would not have helped"
            )
        else:
            score = ShadowScore.UNDECIDED
            why = f"within {window:.0f}s nobody reclaimed {action.target} and it stayed under {bar:.0%}"
        evidence = Evidence(source=TRUST_EVIDENCE, query=SHADOW, value=str(score), at=workflow.now())
        await self.audit(SHADOW, why, [evidence])

    async def _verify(self, policy: ResourcePolicy, action: PlannedAction) -> HealthReport:
        """After the window: the resource still in its new state, then its dependents healthy."""
        self.step = "verifying"
        await workflow.sleep(timedelta(seconds=policy.verify.window))
        spec = action_spec(action.type)
        try:
            report = await self.call(
                activity_name(spec.verify), ResourceCheck(action=action), HealthReport, VERIFY
            )
        except ActivityError as error:
            report = HealthReport(
                verdict=Verdict.UNKNOWN, reason=f"could not re-read the resource: {error.cause or error}"
            )
        check = policy.verify.health_check()
        if check is not None:
            check = check.model_copy(update={"changed_at": self.timeline.acted})
        if report.verdict == Verdict.HEALTHY and check is not None:
            try:
                report = await self.call("prometheus.check_health", check, HealthReport, VERIFY)
            except ActivityError as error:
                report = HealthReport(
                    verdict=Verdict.UNKNOWN, reason=f"health query failed: {error.cause or error}"
                )
        self.timeline.verified = workflow.now()
        self.verdict = report.verdict
        for item in report.evidence:
            self.add_evidence(item)
        lag = self.propagation(report, check.query, policy.verify.window) if check is not None else []
        await self.audit("verified", f"{report.verdict}: {report.reason}", [*report.evidence, *lag])
        return report

    async def _hand_over(self, reason: str, would: list[str], verdict: Verdict | None = None) -> LoopResult:
        briefing = Briefing(
            workflow_id=workflow.info().workflow_id,
            loop=self.loop,
            title=f"resource loop on {self.subject}: suture stopped and needs a human",
            subject=self.subject,
            impact="cost only: the resource is as the briefing says, nothing was retried",
            scope=self.subject,
            reason=reason,
            evidence=self.evidence[-20:],
            would_have_done=would,
            actions_taken=list(self.actions),
        )
        await self.escalate(briefing)
        return await self.finish(Outcome.ESCALATED, reason, verdict=verdict, briefing=briefing)

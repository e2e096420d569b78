"""The reliability loop: an Alertmanager alert in, a verified Kubernetes fix out.

detect (Prometheus evidence) → diagnose (rollout history vs. known signatures) →
decide (pinned policy) → approve when supervised → act (saga) → verify after the
propagation window → resolved, or undo and escalate with a briefing. An
``unknown`` verdict (stale or missing samples) escalates without undoing and
without acting again: suture never repeats an action it cannot judge.

A kill switch pulled before the first action ends the run ``suppressed``; one
pulled between two actions undoes those already taken (a half-applied fix is
never left unverified) and escalates.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, FailureError, WorkflowAlreadyStartedError

from workflows.loop import Paused, RemediationLoop
from workflows.storm import indexed_like_this_run

with workflow.unsafe.imports_passed_through():
    from policies.actions.kubernetes import rollout_history
    from policies.actions.prometheus import collect_evidence
    from policies.diagnosis import diagnose
    from policies.engine import PolicyQueries, decide, queries_for, target_of
    from policies.graph import (
        Dependents,
        DependentsQuery,
        StormInput,
        StormQuery,
        StormVerdict,
        correlate_storm,
        dependents_of,
    )
    from policies.models import PolicyQuery, PolicySelection, ReliabilityPolicy
    from policies.plan import PlanOutcome
    from policies.queries import LabelRefused
    from policies.trust import (
        SHADOW,
        TRUST_EVIDENCE,
        IncidentSignature,
        ShadowScore,
        Trust,
        TrustQuery,
        change_kind,
        learned_confidence,
    )
    from policies.whatif import input_evidence
    from suture.identity import reliability_incident_key
    from suture.models import (
        AlertNotice,
        ApprovalAnswer,
        Briefing,
        ClaimResult,
        Confidence,
        Diagnosis,
        Evidence,
        EvidenceReport,
        EvidenceRequest,
        Loop,
        LoopResult,
        Mode,
        Outcome,
        ReliabilityLoopInput,
        RolloutHistory,
        Target,
        TargetClaim,
        TargetRelease,
        Verdict,
    )


@workflow.defn(name="ReliabilityLoop")
class ReliabilityLoop(RemediationLoop):
    loop = Loop.RELIABILITY

    @workflow.init
    def __init__(self, request: ReliabilityLoopInput) -> None:
        super().__init__()
        self.alert: AlertNotice | None = None
        self.first_notice = request.alert
        self.diagnosis: Diagnosis | None = None
        self.pinned_policy: ReliabilityPolicy | None = None
        self.dependents: list[str] = []

    @workflow.signal(name="evidence")
    def evidence_signal(self, *payload: Any) -> None:
        """A repeat or duplicate notification of the alert: new evidence, not a new run.

        Signal-with-start delivers the first notification both as the input and as
        this signal; that copy is not a repeat. A payload that is not an alert
        notice is audited as ignored (see :meth:`RemediationLoop.decode_signal`).
        """
        notice = self.decode_signal("evidence", AlertNotice, payload)
        if notice is None or notice.received_at == self.first_notice.received_at:
            return
        self.add_evidence(_notice_evidence(notice, "repeat notification"))

    @workflow.signal
    def alert_resolved(self, *payload: Any) -> None:
        notice = self.decode_signal("alert_resolved", AlertNotice, payload)
        if notice is None:
            return
        if notice.fingerprint != self.first_notice.fingerprint:
            reason = f"fingerprint {notice.fingerprint[:64]!r} is not this run's"
            self._ignore_signal("alert_resolved", reason)
            return
        self.add_evidence(_notice_evidence(notice, "Alertmanager reports the alert resolved"))
        self.signal_cleared = True

    @workflow.run
    async def run(self, request: ReliabilityLoopInput) -> LoopResult:
        alert = self.alert = request.alert
        labels = alert.labels
        self.subject = (
            f"{labels.get('namespace', '-')}/{labels.get('service', labels.get('deployment', '-'))}"
        )
        self.timeline.detected = alert.received_at
        alertname = labels.get("alertname", "unnamed alert")
        self.add_evidence(_notice_evidence(alert, "alert fired"))
        for notice in request.joined:
            self.add_evidence(_joined_evidence(notice))
        # The input itself is kept with the entry: `suture policy backtest` replays it.
        kept = [*self.evidence[-1:], input_evidence(alert)]
        await self.audit("detected", f"{alertname} firing for {self.subject}", kept)

        selection = await self.call(
            "policy.select", PolicyQuery(loop=self.loop, labels=labels), PolicySelection
        )
        if selection.policy is None:
            return await self._hand_over(
                f"no policy matches {alertname} ({selection.considered} policies considered)"
            )
        policy = selection.policy
        if not isinstance(policy, ReliabilityPolicy):
            return await self._hand_over(
                f"policy {policy.name!r} governs the {policy.loop} loop, not this one"
            )
        self.pin(policy)
        self.pinned_policy = policy
        self.mode = policy.mode
        self.index()
        target = target_of(policy, labels)
        if target is None:
            return await self._hand_over(
                f"the alert lacks the labels {policy.target.namespace_label!r} and "
                f"{policy.target.name_label!r} that name the {policy.target.kind}"
            )

        # Policies without storm or reach settings (every recorded run) skip both reads.
        if policy.storm is not None and workflow.patched("storm-correlation"):
            joined = await self._join_storm(policy, alert)
            if joined is not None:
                return joined
        if policy.max_dependents is not None and workflow.patched("graph-blast-radius"):
            policy = await self._cap_reach(policy, target)
        try:
            queries = queries_for(policy, labels)
        except LabelRefused as refused:
            # Runs recorded before labels were checked went on with what they had.
            if workflow.patched("refuse-unsafe-query-labels"):
                return await self._hand_over(
                    f"{refused}; its queries could not verify a fix, so nothing was done", target=target
                )
            queries = queries_for(policy, labels, refuse_unsafe=False)
        await self._collect_evidence(queries)
        history = await self._rollout_history(target)
        self.diagnosis = diagnose(policy, history, workflow.now())
        policy = await self._assess(policy, target, history)
        decision = decide(policy, self.diagnosis, target, reliability_incident_key(alert))
        decision = await self.apply_trust(decision)
        self.timeline.decided = workflow.now()
        await self.audit("decided", decision.reason)
        if decision.outcome == PlanOutcome.DRY_RUN:
            await self.audit("dry_run", "would have done: " + "; ".join(decision.would_have_done))
            if self.trusting():
                await self._shadow(policy, target, history)
            return await self.finish(Outcome.DRY_RUN, decision.reason)
        if decision.outcome != PlanOutcome.ACT:
            return await self._hand_over(decision.reason, decision.would_have_done)
        if await self.cap_by_stage(decision.mode) == Mode.DRY_RUN:
            return await self.record_would_have(decision.would_have_done)
        refusal = await self.permission_refusal(decision.actions)
        if refusal is not None:
            return await self._hand_over(refusal, decision.would_have_done, target)

        claim = await self.call(
            "audit.claim_target",
            TargetClaim(
                target=str(target), workflow_id=workflow.info().workflow_id, cooldown_s=policy.cooldown
            ),
            ClaimResult,
        )
        if not claim.granted:
            await self.audit("suppressed", claim.reason)
            return await self.finish(Outcome.SUPPRESSED, claim.reason)
        try:
            return await self._remediate(
                policy, target, decision.actions, decision.would_have_done, queries.verify
            )
        finally:
            await self.call_void(
                "audit.release_target",
                TargetRelease(
                    target=str(target), workflow_id=workflow.info().workflow_id, acted=bool(self.actions)
                ),
            )

    async def _remediate(
        self,
        policy: ReliabilityPolicy,
        target: Target,
        actions: list,
        would: list[str],
        verify_query: str,
    ) -> LoopResult:
        if self.mode == Mode.SUPERVISED:  # the policy's mode, or what earned trust made of it
            assert policy.approval is not None
            answer = await self.await_approval(policy.approval, actions)
            if answer == ApprovalAnswer.TIMEOUT:
                return await self._hand_over(_unanswered(policy), would, target)
            if answer == ApprovalAnswer.REJECT:
                return await self.finish(Outcome.REJECTED, f"rejected by {self.approver}")
            if answer == ApprovalAnswer.CLEARED:
                await self.audit("suppressed", "the alert resolved before anyone approved")
                return await self.finish(
                    Outcome.SUPPRESSED, "the alert resolved before approval; nothing done"
                )
        failure = await self.act(actions)
        if isinstance(failure, Paused):
            return await self._stop_for_kill_switch(failure, would, target)
        if failure is not None:
            undo_failures = await self.compensate()
            return await self._hand_over("; ".join([failure, *undo_failures]), would, target)
        report = await self.verify(
            policy.verify.health_check(verify_query),
            policy.verify.window,
        )
        if report.verdict == Verdict.HEALTHY:
            await self.audit("resolved", report.reason)
            return await self.finish(Outcome.RESOLVED, report.reason, verdict=report.verdict)
        if report.verdict == Verdict.UNKNOWN:
            return await self._hand_over(
                f"verification is inconclusive ({report.reason}); the action is left in place "
                "and not repeated",
                would,
                target,
                verdict=report.verdict,
            )
        undo_failures = await self.compensate()
        undone = "; ".join(undo_failures) or "the action was undone"
        return await self._hand_over(
            f"verification failed ({report.reason}); {undone}",
            would,
            target,
            verdict=report.verdict,
        )

    async def _join_storm(self, policy: ReliabilityPolicy, alert: AlertNotice) -> LoopResult | None:
        """Start or join the storm this alert is part of and end ``suppressed``; None when no storm."""
        assert policy.storm is not None
        query = StormQuery(alert=alert, service=self.subject, rule=policy.storm)
        try:
            verdict = await self.call(correlate_storm, query, StormVerdict)
        except ActivityError as error:
            await self.audit("storm_unknown", f"storm correlation failed ({error.cause or error}); alone")
            return None
        if verdict.storm_id is None:
            await self.audit("no_storm", verdict.reason)
            return None
        storm = StormInput(
            storm_id=verdict.storm_id,
            upstream=verdict.upstream,
            upstream_change=verdict.upstream_change,
            members=verdict.members,
            first=alert,
            gather_s=policy.storm.gather,
        )
        how = await self._start_or_join(storm, alert)
        reason = f"{how} storm run {verdict.storm_id}: {verdict.reason}"
        await self.audit("joined_storm", reason)
        return await self.finish(Outcome.SUPPRESSED, reason)

    async def _start_or_join(self, storm: StormInput, alert: AlertNotice) -> str:
        # The storm outlives this run (ABANDON); its ID makes every alert of the storm meet in one run.
        try:
            await workflow.start_child_workflow(
                "StormLoop",
                storm,
                id=storm.storm_id,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                search_attributes=indexed_like_this_run(storm.upstream or self.subject),
            )
            return "started"
        except WorkflowAlreadyStartedError:
            pass
        try:
            await workflow.get_external_workflow_handle(storm.storm_id).signal("join", alert)
        except FailureError as error:
            return f"could not join (it has closed: {error}) the"
        return "joined"

    async def _cap_reach(self, policy: ReliabilityPolicy, target: Target) -> ReliabilityPolicy:
        """The policy to decide under: supervised when the target's dependents exceed ``max_dependents``."""
        cap = policy.max_dependents
        assert cap is not None
        try:
            found = await self.call(dependents_of, DependentsQuery(service=str(target)), Dependents)
            self.dependents, why = found.dependents, None
        except ActivityError as error:
            why = f"the dependency graph could not be read ({error.cause or error})"
        listed = ", ".join(self.dependents) or "none"
        self.add_evidence(
            Evidence(
                source="graph",
                query=f"dependents of {target}",
                value=str(len(self.dependents)),
                at=workflow.now(),
                note=f"dependents: {listed}"[:1000],
            )
        )
        if why is None and len(self.dependents) <= cap:
            await self.audit("blast_radius", f"{len(self.dependents)} dependents, within {cap}: {listed}")
            return policy
        why = why or f"{target} has {len(self.dependents)} dependents, more than the policy's {cap}"
        if policy.mode != Mode.AUTONOMOUS:
            await self.audit("blast_radius", f"{why}; the policy is {policy.mode} already")
            return policy
        await self.audit("blast_radius", f"{why}: approval required ({listed})", self.evidence[-1:])
        self.mode = Mode.SUPERVISED
        return policy.model_copy(update={"mode": Mode.SUPERVISED})

    async def _assess(
        self, policy: ReliabilityPolicy, target: Target, history: RolloutHistory | None
    ) -> ReliabilityPolicy:
        """Earned trust: assess the incident's signature; the policy with its learned confidence floor.

        The diagnosis's confidence is lowered by stale evidence and a bad track record,
        and the floor moves within the policy's ``trust.confidence`` bounds.
        """
        if not self.trusting() or self.diagnosis is None:
            return policy
        now, trust = workflow.now(), policy.trust or Trust()
        alertname = self.alert.labels.get("alertname", "") if self.alert else ""
        signature = IncidentSignature(
            loop=self.loop,
            alert=alertname,
            service=self.subject,
            change=change_kind(history, now),
            diagnosis=self.diagnosis.signature or "unknown",
        )
        query = TrustQuery(
            loop=self.loop,
            policy=policy.name,
            actions=[step.type for step in policy.actions],
            targets=[str(target)],
            signature=signature,
            declared=self.diagnosis.signature is not None,
            trust=trust,
            at=now,
        )
        assessment = await self.assess_trust(query, policy)
        if assessment is None:
            return policy
        ages = [(now - item.at).total_seconds() for item in self.evidence if item.source != "alertmanager"]
        learned = learned_confidence(
            self.diagnosis.confidence,
            policy.min_confidence,
            trust.confidence,
            [standing.record for standing in assessment.standings if standing.record is not None],
            min(ages) if ages else None,
            max(policy.verify.max_staleness, 60.0),
        )
        self.diagnosis = self.diagnosis.model_copy(
            update={"confidence": learned.value, "lowered_by": learned.lowered_by}
        )
        self.pinned_policy = policy.model_copy(update={"min_confidence": learned.required})
        return self.pinned_policy

    async def _shadow(self, policy: ReliabilityPolicy, target: Target, before: RolloutHistory | None) -> None:
        """Shadow scoring: after a dry run, watch whether the alert clears by itself or a human fixes it."""
        window = (policy.trust or Trust()).shadow_window
        try:
            await workflow.wait_condition(lambda: self.signal_cleared, timeout=timedelta(seconds=window))
            cleared = True
        except TimeoutError:
            cleared = False
        after = await self._rollout_history(target)
        fixed = before is not None and after is not None and after.current_revision != before.current_revision
        if fixed:
            assert before is not None and after is not None
            score = ShadowScore.RIGHT
            why = (
                f"a human changed {target} from revision {before.current_revision} to "
                f"{after.current_revision} within {window:.0f}s: acting would have been right"
            )
        elif cleared:
            score = ShadowScore.NOT_HELPFUL
            why = f"the alert cleared by itself within {window:.0f}s: acting would not have helped"
        else:
            score = ShadowScore.UNDECIDED
            why = f"within {window:.0f}s the alert neither cleared nor did anyone change {target}"
        evidence = Evidence(source=TRUST_EVIDENCE, query=SHADOW, value=str(score), at=workflow.now())
        await self.audit(SHADOW, why, [evidence])

    async def _stop_for_kill_switch(self, paused: Paused, would: list[str], target: Target) -> LoopResult:
        if not self.actions:
            await self.audit("suppressed", paused.reason)
            return await self.finish(Outcome.SUPPRESSED, paused.reason)
        undo_failures = await self.compensate()
        undone = "; ".join(undo_failures) or "the actions already taken were undone"
        return await self._hand_over(f"{paused.reason}; {undone}", would, target)

    async def _collect_evidence(self, built: PolicyQueries) -> None:
        queries = [*built.evidence, built.verify]
        try:
            report = await self.call(collect_evidence, EvidenceRequest(queries=queries), EvidenceReport)
        except ActivityError as error:
            self.add_evidence(
                Evidence(
                    source="prometheus",
                    query="; ".join(queries),
                    at=workflow.now(),
                    note=f"unavailable: {error.cause or error}",
                )
            )
            return
        for item in report.evidence:
            self.add_evidence(item)

    async def _rollout_history(self, target: Target) -> RolloutHistory | None:
        try:
            return await self.call(rollout_history, target, RolloutHistory)
        except ActivityError as error:
            await self.audit("diagnosis_degraded", f"rollout history unavailable: {error.cause or error}")
            return None

    async def _hand_over(
        self,
        reason: str,
        would_have_done: list[str] | None = None,
        target: Target | None = None,
        verdict: Verdict | None = None,
    ) -> LoopResult:
        labels = self.alert.labels if self.alert else {}
        annotations = self.alert.annotations if self.alert else {}
        briefing = Briefing(
            workflow_id=workflow.info().workflow_id,
            loop=self.loop,
            title=f"{labels.get('alertname', 'alert')} on {self.subject}: suture stopped and needs a human",
            subject=self.subject,
            impact=annotations.get("summary") or annotations.get("description") or "see evidence",
            scope=str(target) if target else self.subject,
            reason=reason,
            evidence=self.evidence[-20:],
            recent_changes=self.diagnosis.recent_changes if self.diagnosis else [],
            would_have_done=would_have_done or [],
            actions_taken=self.actions,
            users_affected=annotations.get("users", ""),
            severity=labels.get("severity", ""),
            labels=labels,
            confidence=self._confidence(),
            dependents=self.dependents,
        )
        await self.escalate(briefing)
        return await self.finish(Outcome.ESCALATED, reason, verdict=verdict, briefing=briefing)

    def _labels(self) -> dict[str, str]:
        return self.alert.labels if self.alert else {}

    def _confidence(self) -> Confidence | None:
        """The diagnosis's confidence against the policy's floor, and what kept it low."""
        if self.diagnosis is None:
            return None
        policy = self.pinned_policy
        required = policy.min_confidence if policy is not None else None
        lowered = list(self.diagnosis.lowered_by)
        if self.diagnosis.signature is None:
            lowered.append(f"{self.diagnosis.summary}: the policy's base confidence applies")
        if required is not None and self.diagnosis.confidence < required:
            lowered.append(f"below the policy's min_confidence {required:.2f}")
        return Confidence(value=self.diagnosis.confidence, required=required, lowered_by=lowered)


def _unanswered(policy: ReliabilityPolicy) -> str:
    approval = policy.approval
    assert approval is not None
    if approval.tiers:
        return f"nobody of the {len(approval.tiers)} approval tiers answered in time"
    return f"nobody approved within {approval.timeout:.0f}s"


def _notice_evidence(notice: AlertNotice, note: str) -> Evidence:
    return Evidence(
        source="alertmanager",
        query=notice.labels.get("alertname", "")[:200],
        value=notice.status,
        at=notice.received_at,
        note=note,
    )


def _joined_evidence(notice: AlertNotice) -> Evidence:
    labels = notice.labels
    return Evidence(
        source="alertmanager",
        query=labels.get("alertname", "")[:200],
        value=f"{labels.get('namespace', '-')}/{labels.get('service', labels.get('deployment', '-'))}",
        at=notice.received_at,
        note="joined this storm run",
    )

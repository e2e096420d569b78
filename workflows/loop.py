"""The skeleton every loop shares: audit, approval, saga, verification, escalation.

A loop subclass supplies detection and diagnosis for its domain and calls these
steps in order. The saga pushes an action's undo *before* the action runs, using
state captured by the action's ``prepare`` activity, so a crash between "do" and
"record" can never leave a change without its way back. Verification that cannot
be trusted (stale or missing samples) escalates instead of acting again.

A run never acts beyond its loop's activation stage (:mod:`suture.stages`): once
a loop has decided, :meth:`RemediationLoop.cap_by_stage` lowers the mode to
``dry_run`` where the stage forbids acting, after every other gate, and audits the
mode it would have used. ``act`` reads the stage again before each action, so a
loop moved back while a run waited for approval takes no further action.

The kill switch is read right before each action, not once per run: a switch
pulled while a run waits for approval, or between two actions of one saga, stops
the next action. ``act`` then returns :class:`Paused` and the loop decides what
becomes of the actions already taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from policies.actions import action_spec, activity_declaration, over_the_cap
    from policies.actions.prometheus import check_health
    from policies.models import Approval
    from policies.plan import Plan
    from policies.schema import Final, Notify, Tier
    from policies.trust import (
        ASSESSED,
        TRUST_EVIDENCE,
        AssessedIncident,
        Demotion,
        TrustAssessment,
        TrustQuery,
        gate,
    )
    from suture import search_attributes as sa
    from suture.errors import NON_RETRYABLE
    from suture.models import (
        ActionOutcome,
        ActionRecord,
        ApprovalAnswer,
        ApprovalDecision,
        ApprovalReceipt,
        ApprovalRequest,
        AuditEntry,
        Briefing,
        ChannelDelivery,
        ChannelEvent,
        ChannelKind,
        ChannelReceipt,
        Commands,
        Evidence,
        HealthCheck,
        HealthReport,
        KillSwitchQuery,
        KillSwitchState,
        Loop,
        LoopResult,
        LoopStatus,
        Mode,
        Outcome,
        PlannedAction,
        Snapshot,
        Step,
        Timeline,
        Verdict,
    )
    from suture.stages import (
        ACTING,
        PROPAGATION,
        PermissionQuery,
        PermissionVerdict,
        Stage,
        StageQuery,
        StageState,
        cap_mode,
    )

ResultT = TypeVar("ResultT")
ModelT = TypeVar("ModelT", bound=BaseModel)

QUICK = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5))
ACTION = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE,
)
VERIFY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE
)
NOTIFY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE,
)
"""A channel gets a few tries; then the next channel of the policy is tried."""
ASK = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)
"""Asking whether an action is permitted: a few tries, then the action itself is the test."""
MAX_EVIDENCE = 200
MAX_IGNORED_SIGNALS = 50
"""Malformed signals kept for the audit trail; a flood beyond this is counted, not kept."""
BOOKKEEPING = frozenset(
    {
        "audit.record",
        "audit.claim_target",
        "audit.release_target",
        "audit.close_run",
        "policy.select",
        "governance.kill_switch",
        "trust.assess",
        "governance.stage",
    }
)
"""Activities that only touch suture's own store and files: run as local activities.

They are short and idempotent, so the worker runs them in place and records a
marker, instead of a server round trip and a workflow task for each one; on a
loaded server that halves the time from alert to action."""


@dataclass(frozen=True)
class Paused:
    """Why :meth:`RemediationLoop.act` stopped before an action: a kill switch, who pulled it, why."""

    reason: str


@dataclass
class _Compensation:
    snapshot: Snapshot
    record: ActionRecord


class RemediationLoop:
    """State and steps shared by every loop. Subclasses define ``run``."""

    loop: Loop

    def __init__(self) -> None:
        self.step: str = Step.STARTING
        self.subject = ""
        self.mode: Mode | None = None
        self.policy_name: str | None = None
        self.policy_version: str | None = None
        self.evidence: list[Evidence] = []
        self.timeline = Timeline()
        self.actions: list[ActionRecord] = []
        self.saga: list[_Compensation] = []
        self.decision: tuple[ApprovalAnswer, ApprovalDecision] | None = None
        self.approval_policy: Approval | None = None
        self.pinned_approvers: list[str] = []
        self.ignored_approvers: list[str] = []
        self.ignored_signals: list[str] = []
        self.ignored_signal_overflow = 0
        self.human_touched = False
        self.approver: str | None = None
        self.signal_cleared = False
        self._audit_seq = 0
        self.notify: Notify | None = None
        self.tier: int | None = None
        self.tier_approvers: list[str] | None = None
        self.deadline: datetime | None = None
        self.tier_history: list[str] = []
        self.proposed: list[str] = []
        self.paged: list[ChannelDelivery] = []
        self._trusting: bool | None = None
        self.trust_query: TrustQuery | None = None
        self.trust_assessment: TrustAssessment | None = None
        self.trust_notes: list[str] = []
        self.nearest: list[str] = []
        self.has_approvers = False
        self.verdict: Verdict | None = None
        """The last verification's verdict: an unhealthy one under autonomy announces a demotion."""
        self.stage: Stage | None = None
        """The loop's stage when the run decided; None before (and in runs recorded before stages)."""
        self.in_scope = False
        self.would_have_mode: Mode | None = None
        """The mode the stage lowered, when it lowered one."""

    # --- signals and queries ----------------------------------------------------

    # Signal handlers take their payloads raw and decode them here: a signal sent
    # without input, with ``null`` or with the wrong shape would otherwise fail
    # every workflow task of the run and hang it for good. A payload that does not
    # decode is recorded as ignored and audited; the run carries on.

    @workflow.signal
    def approve(self, *payload: Any) -> None:
        decision = self.decode_signal("approve", ApprovalDecision, payload)
        if decision is not None:
            self._receive_decision(ApprovalAnswer.APPROVE, decision)

    @workflow.signal
    def reject(self, *payload: Any) -> None:
        decision = self.decode_signal("reject", ApprovalDecision, payload)
        if decision is not None:
            self._receive_decision(ApprovalAnswer.REJECT, decision)

    @workflow.update(name="decide")
    def decide_now(self, request: ApprovalRequest) -> ApprovalReceipt:
        """Approve or reject with an immediate answer (``suture approve``/``reject``).

        The validator refuses, before anything is written to the history, an
        answer that is not approve/reject, a run that is not waiting, and a name
        the pinned policy does not list; the caller sees the reason at once.
        """
        self._receive_decision(request.answer, request.decision())
        return ApprovalReceipt(
            workflow_id=workflow.info().workflow_id,
            answer=request.answer,
            approver=request.approver,
            policy=self.policy_name,
        )

    @decide_now.validator
    def _validate_decision(self, request: ApprovalRequest) -> None:
        if request.answer not in (ApprovalAnswer.APPROVE, ApprovalAnswer.REJECT):
            raise ValueError(f"answer must be approve or reject, not {request.answer}")
        refusal = self._refusal(request.approver)
        if refusal is not None:
            raise ValueError(refusal)

    @workflow.query
    def status(self) -> LoopStatus:
        return LoopStatus(
            step=self.step,
            mode=self.mode,
            policy=self.policy_name,
            evidence=self.evidence[-20:],
            pending_approval=self.step == Step.AWAITING_APPROVAL,
            ignored_approvers=self.ignored_approvers,
            approvers=self._allowed(),
            subject=self.subject,
            proposed_actions=self.proposed,
            tier=self.tier,
            tiers=len(self.approval_policy.tiers)
            if self.approval_policy and self.approval_policy.tiers
            else None,
            deadline=self.deadline,
            tier_history=self.tier_history,
        )

    def _allowed(self) -> list[str]:
        """Who may answer now: the tiers reached so far, or the policy's approvers."""
        if self.tier_approvers is not None:
            return self.tier_approvers
        return self.approval_policy.approvers if self.approval_policy else []

    def _refusal(self, approver: str) -> str | None:
        """Why ``approver`` may not answer now, or None when they may."""
        if self.decision is not None:
            return f"the run has already been answered by {self.decision[1].approver}"
        if self.step != Step.AWAITING_APPROVAL:
            return f"the run is not waiting for approval (it is at step {self.step!r})"
        allowed = self._allowed()
        if approver not in allowed:
            return (
                f"{approver!r} is not an approver of this run (its policy {self.policy_name!r} "
                f"lists {', '.join(allowed) or 'nobody'})"
            )
        return None

    def _receive_decision(self, answer: ApprovalAnswer, decision: ApprovalDecision) -> None:
        allowed = self._allowed()
        if self.step != Step.AWAITING_APPROVAL or decision.approver not in allowed:
            if len(self.ignored_approvers) < MAX_IGNORED_SIGNALS:
                self.ignored_approvers.append(decision.approver)
            else:
                self.ignored_signal_overflow += 1
            return
        if self.decision is None:  # the first listed answer wins; later ones change nothing
            self.decision = (answer, decision)

    def decode_signal(self, name: str, model: type[ModelT], payload: tuple[Any, ...]) -> ModelT | None:
        """The signal's one argument as ``model``, or None (recorded as ignored) when it is not one."""
        if len(payload) != 1:
            self._ignore_signal(name, f"expected one argument, got {len(payload)}")
            return None
        try:
            return model.model_validate(payload[0])
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or 'payload'}: {item['msg']}"
                for item in error.errors(include_url=False, include_input=False)[:3]
            )
            self._ignore_signal(name, f"not a valid {model.__name__} ({problems})")
            return None

    def _ignore_signal(self, name: str, reason: str) -> None:
        if len(self.ignored_signals) < MAX_IGNORED_SIGNALS:
            self.ignored_signals.append(f"signal {name!r} ignored: {reason}"[:500])
        else:
            self.ignored_signal_overflow += 1

    def pin(self, policy: Any) -> None:
        """Record the policy this run decides under; its approvers also decide who may undo it."""
        self.policy_name, self.policy_version = policy.name, policy.version
        approval = getattr(policy, "approval", None)
        self.pinned_approvers = list(approval.approvers) if approval is not None else []
        self.notify = getattr(policy, "notify", None)

    def add_evidence(self, item: Evidence) -> None:
        self.evidence.append(item)
        del self.evidence[:-MAX_EVIDENCE]

    # --- steps ----------------------------------------------------------------------

    async def call(
        self,
        activity: Callable[..., Any] | str,
        arg: Any,
        result_type: type[ResultT],
        retry: RetryPolicy = QUICK,
    ) -> ResultT:
        """Run an activity, declared (a reference) or by name, with its declared time limits.

        Suture's own bookkeeping runs as a local activity.
        """
        declared = activity_declaration(activity)
        if declared.name in BOOKKEEPING:
            local: ResultT = await workflow.execute_local_activity(
                declared.name,
                arg,
                result_type=result_type,
                start_to_close_timeout=declared.start_to_close,
                retry_policy=retry,
            )
            return local
        result: ResultT = await workflow.execute_activity(
            declared.name,
            arg,
            result_type=result_type,
            start_to_close_timeout=declared.start_to_close,
            heartbeat_timeout=declared.heartbeat,
            retry_policy=retry,
        )
        return result

    async def call_void(self, name: str, arg: Any) -> None:
        await self.call(name, arg, type(None))

    async def audit(
        self, step: str, detail: str, evidence: list[Evidence] | None = None, actor: str = "suture"
    ) -> None:
        await self._audit_ignored_signals()
        await self._record(step, detail, evidence, actor)

    async def _note(self, entry_step: str, detail: str) -> None:
        """Audit a side note (a channel sent or failed) without moving the run's step."""
        await self._audit_ignored_signals()
        await self._record(self.step, detail, None, "suture", entry_step)

    async def _audit_ignored_signals(self) -> None:
        """Write the malformed signals received since the last audit entry to the trail."""
        while self.ignored_signals:
            await self._record(self.step, self.ignored_signals.pop(0), None, "suture", "signal_ignored")
        if self.ignored_signal_overflow:
            count, self.ignored_signal_overflow = self.ignored_signal_overflow, 0
            detail = f"{count} more malformed signals ignored"
            await self._record(self.step, detail, None, "suture", "signal_ignored")

    async def _record(
        self,
        step: str,
        detail: str,
        evidence: list[Evidence] | None,
        actor: str,
        entry_step: str | None = None,
    ) -> None:
        self.step = step
        step = entry_step or step
        self._audit_seq += 1
        workflow.set_current_details(self._current_details(detail))
        entry = AuditEntry(
            workflow_id=workflow.info().workflow_id,
            seq=self._audit_seq,
            loop=self.loop,
            subject=self.subject,
            step=step,
            detail=detail,
            actor=actor,
            evidence=evidence or [],
            at=workflow.now(),
        )
        await self.call_void("audit.record", entry)

    def _current_details(self, detail: str) -> str:
        """What the Temporal UI shows as this run's current details (Markdown)."""
        lines = [f"**{self.loop.value} loop** on `{self.subject or '-'}`", f"step: **{self.step}**"]
        if self.policy_name:
            lines.append(f"policy: {self.policy_name} ({self.mode or '-'})")
        if self.step == Step.AWAITING_APPROVAL:
            lines.append(f"approvers: {', '.join(self._allowed()) or '-'}")
            if self.deadline is not None:
                lines.append(f"deadline: {self.deadline.isoformat(timespec='seconds')}")
        lines.append(f"last: {detail[:300]}")
        return "  \n".join(lines)

    def _explain(self, outcome: Outcome, reason: str) -> None:
        """Leave the outcome where the Temporal UI shows it: the memo (runs listed) and the details.

        Runs recorded before the memo existed replay without it.
        """
        workflow.set_current_details(f"**{outcome}** on `{self.subject or '-'}`  \n{reason[:500]}")
        if workflow.info().typed_search_attributes.get(sa.SUTURE_LOOP) is None:
            return
        if workflow.patched("outcome-memo"):
            memo = {"outcome": str(outcome), "subject": self.subject, "reason": reason[:1000]}
            if self.policy_name:
                memo["policy"] = self.policy_name
            workflow.upsert_memo(memo)

    def index(self, outcome: str | None = None) -> None:
        """Update the search attributes, when the run was started with suture's."""
        if workflow.info().typed_search_attributes.get(sa.SUTURE_LOOP) is None:
            return
        updates = []
        if outcome is not None:
            updates.append(sa.SUTURE_OUTCOME.value_set(outcome))
        if self.mode is not None:
            updates.append(sa.SUTURE_MODE.value_set(str(self.mode)))
        if updates:
            workflow.upsert_search_attributes(updates)

    async def await_approval(
        self, approval: Approval, actions: list[PlannedAction] | None = None
    ) -> ApprovalAnswer:
        """Wait for ``approve``/``reject`` from a listed approver.

        Returns how the wait ended: approved, rejected, timed out, or cleared (the
        signal that started the run went away before anyone answered). Malformed
        signals received meanwhile are audited as they come, not after the wait.

        With tiers, the wait goes tier by tier, each audited and announced on its
        channel; when the last one times out the policy's ``final`` applies, and
        ``act_if_reversible`` approves on suture's own authority only ``actions``
        that have a declared undo and stay within their ``max_targets``.
        """
        self.approval_policy = approval
        self.proposed = [f"{action.type} on {action.target}" for action in actions or []]
        if approval.tiers:
            answer = await self._await_tiers(approval, actions or [])
        else:
            await self.audit(Step.AWAITING_APPROVAL, f"approvers: {', '.join(approval.approvers)}")
            self.deadline = workflow.now() + timedelta(seconds=approval.timeout)
            if self.notify is not None:  # only policies with channels: recorded runs had none
                await self._announce(self.notify.route(self._labels()), None)
            answer = await self._wait_for_answer(self.deadline)
        if self.decision is not None and answer in (ApprovalAnswer.APPROVE, ApprovalAnswer.REJECT):
            return await self._record_answer()
        return answer

    async def _wait_for_answer(self, deadline: datetime) -> ApprovalAnswer:
        self.index(sa.PENDING_APPROVAL)
        try:
            while True:
                await workflow.wait_condition(
                    lambda: self.decision is not None or self.signal_cleared or bool(self.ignored_signals),
                    timeout=max(deadline - workflow.now(), timedelta(0)),
                )
                if self.decision is not None or self.signal_cleared:
                    break
                await self._audit_ignored_signals()
        except TimeoutError:
            return ApprovalAnswer.TIMEOUT
        finally:
            self.index(sa.IN_PROGRESS)
            for name in self.ignored_approvers:
                await self.audit("approval_ignored", f"{name} is not an approver of this policy", actor=name)
            if self.tier is not None:  # audited once per tier, not again at the next
                self.ignored_approvers.clear()
        if self.decision is None:
            return ApprovalAnswer.CLEARED
        return self.decision[0]

    async def _record_answer(self) -> ApprovalAnswer:
        assert self.decision is not None
        answer, decision = self.decision
        self.human_touched, self.approver = True, decision.approver
        self.timeline.approved = workflow.now()
        await self.audit(f"{answer}d", decision.note or str(answer), actor=decision.approver)
        return answer

    async def _await_tiers(self, approval: Approval, actions: list[PlannedAction]) -> ApprovalAnswer:
        allowed: list[str] = []
        for number, tier in enumerate(approval.tiers, start=1):
            allowed += [name for name in tier.approvers if name not in allowed]
            self.tier, self.tier_approvers = number, list(allowed)
            self.deadline = workflow.now() + timedelta(seconds=tier.timeout)
            entry = (
                f"tier {number}/{len(approval.tiers)}: {', '.join(tier.approvers)} asked until "
                f"{self.deadline.isoformat(timespec='seconds')}"
                + (f" on {tier.channel}" if tier.channel else "")
            )
            self.tier_history.append(entry)
            await self.audit(Step.AWAITING_APPROVAL, entry)
            await self._announce_tier(tier, number)
            answer = await self._wait_for_answer(self.deadline)
            if answer != ApprovalAnswer.TIMEOUT:
                return answer
            self.tier_history.append(f"tier {number} timed out")
            await self.audit("tier_timed_out", f"nobody of tier {number} answered within {tier.timeout:.0f}s")
        return await self._final_fallback(approval, actions)

    async def _final_fallback(self, approval: Approval, actions: list[PlannedAction]) -> ApprovalAnswer:
        if approval.final != Final.ACT_IF_REVERSIBLE:
            self.tier_history.append("every tier timed out: handing over (final: abort)")
            await self.audit("final_fallback", "every tier timed out; final is abort: nothing is done")
            return ApprovalAnswer.TIMEOUT
        refusal = over_the_cap(actions) if actions else "no action was proposed"
        if refusal is None:
            missing = [action.type for action in actions if action_spec(action.type).undo is None]
            refusal = f"{', '.join(missing)} declare no undo" if missing else None
        if refusal is not None:
            self.tier_history.append(f"every tier timed out; not acting: {refusal}")
            await self.audit("final_fallback", f"every tier timed out; not acting on my own: {refusal}")
            return ApprovalAnswer.TIMEOUT
        self.tier_history.append("every tier timed out: acting, the action is reversible and small")
        await self.audit(
            "final_fallback",
            "every tier timed out; final is act_if_reversible and every action has its undo "
            "within its max_targets: acting on suture's own authority",
        )
        return ApprovalAnswer.APPROVE

    async def _announce_tier(self, tier: Tier, number: int) -> None:
        """Send the approval request of a tier to its channel (falling back to the policy's others)."""
        if tier.channel is None or self.notify is None:
            return
        first = self.notify.channel(tier.channel)
        assert first is not None  # the policy's validator checked it
        chain = [first, *(channel for channel in self.notify.channels if channel.name != first.name)]
        await self._announce(chain, number)

    def _labels(self) -> dict[str, str]:
        """The signal's labels, for routing; a loop with labels (reliability) overrides this."""
        return {}

    async def _announce(self, chain: list[Any], number: int | None) -> None:
        """Ask for an approval on ``chain``: the briefing of a run that waits for a human."""
        asked = f"tier {number}" if number is not None else "an approver"
        briefing = Briefing(
            workflow_id=workflow.info().workflow_id,
            loop=self.loop,
            title=f"{self.subject}: suture asks {asked} to approve",
            subject=self.subject,
            impact="waiting for a human decision before acting",
            scope=self.subject,
            reason=f"policy {self.policy_name} is supervised; {asked} must answer",
            labels=self._labels(),
            evidence=self.evidence[-10:],
            would_have_done=self.proposed,
            tier=number,
            approvers=list(self._allowed()),
            deadline=self.deadline,
        )
        self._complete(briefing)
        await self._deliver(briefing, chain)

    async def _deliver(self, briefing: Briefing, chain: list[Any]) -> bool:
        """Send through ``chain`` until one channel takes it; each fallback is audited."""
        for index, channel in enumerate(chain):
            delivery = ChannelDelivery(channel=channel, briefing=briefing, event=ChannelEvent.TRIGGER)
            try:
                await self.call("notify.send", delivery, ChannelReceipt, NOTIFY)
            except ActivityError as error:
                following = chain[index + 1].name if index + 1 < len(chain) else None
                then = f"falling back to {following}" if following else "no channel left"
                await self._note(
                    "notify_fallback", f"channel {channel.name} failed ({error.cause or error}); {then}"
                )
                continue
            if channel.kind == ChannelKind.PAGERDUTY:
                self.paged.append(delivery)
            await self._note("notified", f"briefing sent to {channel.name} ({channel.kind.value})")
            return True
        return False

    # --- earned trust ----------------------------------------------------------------

    def trusting(self) -> bool:
        """Whether this run keeps and applies earned trust; runs recorded before it replay without."""
        if self._trusting is None:
            self._trusting = workflow.patched("earned-trust")
        return self._trusting

    async def assess_trust(self, query: TrustQuery, policy: Any) -> TrustAssessment | None:
        """Ask the store what it knows about this incident, and audit the incident's signature.

        The ``assessed`` entry is the fact the track record is derived (and rebuilt) from.
        """
        if not self.trusting():
            return None
        assessment = await self.call("trust.assess", query, TrustAssessment)
        self.trust_query, self.trust_assessment = query, assessment
        self.has_approvers = getattr(policy, "approval", None) is not None
        incident = AssessedIncident(
            policy=query.policy,
            actions=query.actions,
            signature=query.signature,
            demotion=query.trust.demotion,
        )
        record = Evidence(
            source=TRUST_EVIDENCE, query=ASSESSED, value=incident.model_dump_json(), at=workflow.now()
        )
        seen = f"seen {assessment.good} times with a good outcome, {assessment.bad} with a bad one"
        await self.audit_trust(ASSESSED, f"signature {query.signature.key()}: {seen}", [record])
        return assessment

    async def audit_trust(self, step: str, detail: str, evidence: list[Evidence]) -> None:
        """Audit a trust fact; a loop racing to contain (security) queues it instead."""
        await self.audit(step, detail, evidence)

    async def apply_trust(self, plan: Plan) -> Plan:
        """The trust gate, right after a loop made its plan (the stage cap comes after it).

        Promotions and demotions set the mode of the plan's action classes; a target
        under an exception, or a novel incident under autonomy, goes to a human. Runs
        that did not assess trust (recorded before it) keep their plan.
        """
        query, assessment = self.trust_query, self.trust_assessment
        if query is None or assessment is None:
            return plan
        gated = gate(plan, query, assessment, self.has_approvers)
        self.trust_notes += gated.notes
        if gated.novel:
            self.nearest = [
                f"{past.workflow_id}: {past.resolution} (shares {past.shared} of 4 fields: {past.signature})"
                for past in assessment.nearest
            ] or ["none: suture has seen nothing like it"]
        if gated.plan == plan:
            return plan
        self.mode = gated.plan.mode
        self.index()
        await self.audit("trust_gate", "; ".join(gated.notes))
        return gated.plan

    def _demotion_notice(self) -> str | None:
        """The demotion this run's failure causes (the store applies it when the run closes)."""
        query = self.trust_query
        if query is None or query.trust.demotion == Demotion.OFF or self.mode != Mode.AUTONOMOUS:
            return None
        if self.verdict != Verdict.UNHEALTHY:
            return None
        return (
            f"{', '.join(query.actions)} of policy {query.policy} is demoted to supervised: this autonomous "
            "run failed verification; the next such incident waits for approval"
        )

    async def act(self, actions: list[PlannedAction]) -> str | Paused | None:
        """Run actions in order as a saga.

        Returns None, why an action failed, or :class:`Paused` when a kill switch
        stopped the next action (earlier actions of the saga stay registered in
        ``self.saga``; the caller decides whether to undo them). A plan that
        reaches more targets than an action's ``max_targets`` fails before anything
        is touched.
        """
        over = over_the_cap(actions)
        if over is not None:
            await self.audit("blast_radius_exceeded", over)
            return over
        for action in actions:
            paused = await self._kill_switch(action) or await self._stage_lowered(action)
            if paused is not None:
                return paused
            spec = action_spec(action.type)
            started = workflow.now()
            try:
                snapshot = await self.call(spec.prepare, action, Snapshot, ACTION)
            except ActivityError as error:
                return await self._action_failed(action, "could not capture its undo state", error)
            record = ActionRecord(
                type=action.type, target=str(action.target), mode=action.mode, started_at=started
            )
            self.saga.append(_Compensation(snapshot, record))
            self.actions.append(record)
            self.timeline.acted = self.timeline.acted or workflow.now()
            try:
                outcome = await self.call(spec.do, snapshot, ActionOutcome, ACTION)
            except ActivityError as error:
                return await self._action_failed(action, "failed", error)
            record.detail = outcome.detail
            await self.audit("acted", f"{action.type} on {action.target}: {outcome.detail}", outcome.evidence)
        return None

    async def cap_by_stage(self, mode: Mode | None, in_scope: bool = False) -> Mode | None:
        """The mode this run may use at its loop's stage: ``mode``, or ``dry_run`` where it forbids acting.

        Called once the plan (and any other gate) has set ``mode``, before any
        approval wait. ``in_scope`` says whether the target lies in the loop's
        ``live_scoped`` scope. A lowered mode is audited with the mode it replaced.
        Runs recorded before stages existed replay without the read.
        """
        if mode not in ACTING or not workflow.patched("activation-stage"):
            return mode
        state = await self.call("governance.stage", StageQuery(loop=self.loop), StageState)
        self.stage, self.in_scope = state.stage, in_scope
        capped = cap_mode(state.stage, mode, in_scope)
        if capped == mode:
            return mode
        self.would_have_mode, self.mode = mode, capped
        self.index()
        await self.audit(
            "stage_capped",
            f"the {self.loop} loop is at stage {state.stage}: policy mode {mode} lowered to {capped} "
            f"(would have used {mode})",
        )
        return capped

    async def record_would_have(self, would_have_done: list[str]) -> LoopResult:
        """End a run whose stage forbade acting: record what it would have done, outcome ``dry_run``."""
        why = (
            f"{self.stage} stage: the {self.loop} loop does not act yet (policy mode {self.would_have_mode})"
        )
        await self.audit("dry_run", "would have done: " + "; ".join(would_have_done))
        return await self.finish(Outcome.DRY_RUN, why)

    async def permission_refusal(self, actions: list[PlannedAction]) -> str | None:
        """Why the worker's identity may not take ``actions``, asked of Kubernetes and AWS; None if it may.

        A run that would act asks first, so a missing permission escalates before
        anything is touched instead of failing halfway through a saga. When nobody
        can be asked (the check itself fails), the run goes on: the action's own
        error is then the answer. Runs recorded before the check replay without it.
        """
        if not actions or not workflow.patched("write-permissions"):
            return None
        try:
            verdict = await self.call(
                "readiness.write_permissions", PermissionQuery(actions=actions), PermissionVerdict, ASK
            )
        except ActivityError:
            return None
        if not verdict.missing:
            return None
        reason = (
            f"the worker's identity lacks {'; '.join(verdict.missing)}: nothing was done "
            "(grant what `suture permissions --iam|--rbac` prints)"
        )
        await self.audit("permission_missing", reason)
        return reason

    async def _stage_lowered(self, action: PlannedAction) -> Paused | None:
        """The stage read again before ``action``: moved back since the run decided, nothing more is done."""
        if self.stage is None or not workflow.patched("activation-stage-act"):
            return None
        state = await self.call("governance.stage", StageQuery(loop=self.loop), StageState)
        if cap_mode(state.stage, action.mode, self.in_scope) == action.mode:
            return None
        return Paused(
            f"the {self.loop} loop was moved to stage {state.stage} by {state.by or 'someone'}; "
            f"{action.type} on {action.target} not taken"
        )

    async def _kill_switch(self, action: PlannedAction) -> Paused | None:
        """The kill switch of this loop, read before ``action``.

        Runs recorded before the switch existed replay without the read.
        """
        if not workflow.patched("kill-switch"):
            return None
        state = await self.call("governance.kill_switch", KillSwitchQuery(loop=self.loop), KillSwitchState)
        if not state.paused:
            return None
        return Paused(f"{state}; {action.type} on {action.target} not taken")

    async def _action_failed(self, action: PlannedAction, what: str, error: ActivityError) -> str:
        reason = f"{action.type} on {action.target} {what}: {error.cause or error}"
        await self.audit("action_failed", reason)
        return reason

    async def compensate(self) -> list[str]:
        """Undo every action taken, newest first. Returns the undos that failed, for the briefing."""
        failures = []
        while self.saga:
            entry = self.saga.pop()
            spec = action_spec(entry.snapshot.action.type)
            try:
                outcome = await self.call(spec.undo, entry.snapshot, ActionOutcome, ACTION)
            except ActivityError as error:
                failures.append(
                    f"undo of {spec.name} on {entry.record.target} failed: {error.cause or error}"
                )
                await self.audit("compensation_failed", failures[-1])
                continue
            entry.record.compensated = True
            await self.audit("compensated", f"undid {spec.name} on {entry.record.target}: {outcome.detail}")
        return failures

    async def verify(self, check: HealthCheck, window_s: float) -> HealthReport:
        """Wait out the propagation window on a durable timer, then ask the signal."""
        self.step = Step.VERIFYING
        await workflow.sleep(timedelta(seconds=window_s))
        check = check.model_copy(update={"changed_at": self.timeline.acted})
        try:
            report = await self.call(check_health, check, HealthReport, VERIFY)
        except ActivityError as error:
            report = HealthReport(
                verdict=Verdict.UNKNOWN, reason=f"health query failed: {error.cause or error}"
            )
        self.timeline.verified = workflow.now()
        self.verdict = report.verdict
        for item in report.evidence:
            self.add_evidence(item)
        lag = self.propagation(report, check.query, window_s)
        await self.audit("verified", f"{report.verdict}: {report.reason}", [*report.evidence, *lag])
        return report

    def propagation(self, report: HealthReport, query: str, window_s: float) -> list[Evidence]:
        """The verification lag as evidence: how long after the action the signal first showed it."""
        acted = self.timeline.acted
        if report.first_met_at is None or acted is None:
            return []
        lag = max((report.first_met_at - acted).total_seconds(), 0.0)
        return [
            Evidence(
                source=PROPAGATION,
                query=query,
                value=round(lag, 3),
                at=report.first_met_at,
                note=f"the signal first met its condition {lag:.1f}s after the action (window {window_s:g}s)",
            )
        ]

    async def escalate(self, briefing: Briefing) -> None:
        """Hand the briefing to a human: the policy's channels in order, else the default webhook."""
        self._complete(briefing)
        routed = self._channels(briefing)
        if routed:
            delivered = await self._deliver(briefing, routed)
            if not delivered:
                await self.call_void("notify.escalate", briefing)
        else:
            await self.call_void("notify.escalate", briefing)
        await self.audit("escalated", briefing.reason)

    def _channels(self, briefing: Briefing) -> list[Any]:
        return self.notify.route(briefing.labels) if self.notify is not None else []

    def _complete(self, briefing: Briefing) -> None:
        """Fill what every briefing carries: when, how fresh, the commands, the next steps."""
        run = workflow.info().workflow_id
        now = workflow.now()
        briefing.written_at = now
        briefing.service = briefing.service or self.subject
        stamps = [item.at for item in briefing.evidence]
        if stamps and briefing.evidence_age_s is None:
            briefing.evidence_age_s = max((now - max(stamps)).total_seconds(), 0.0)
        who = (briefing.approvers or self._allowed() or self.pinned_approvers or ["NAME"])[0]
        waiting = self.step == Step.AWAITING_APPROVAL or briefing.tier is not None
        briefing.commands = Commands(
            approve=f"suture approve {run} --as {who}" if waiting else "",
            reject=f"suture reject {run} --as {who}" if waiting else "",
            undo=f"suture undo {run} --as {who}" if self.saga or self.actions else "",
            status=f"temporal workflow query --workflow-id {run} --name status",
        )
        if not briefing.automation:
            briefing.automation = _automation_sentence(briefing)
        if not briefing.next_steps:
            briefing.next_steps = _next_steps(briefing, bool(self.saga))
        demotion = self._demotion_notice()
        briefing.trust = briefing.trust or [*self.trust_notes, *([demotion] if demotion else [])]
        briefing.nearest_incidents = briefing.nearest_incidents or list(self.nearest)

    async def finish(self, outcome: Outcome, reason: str, **extra: Any) -> LoopResult:
        if self.paged and outcome in (Outcome.RESOLVED, Outcome.REJECTED, Outcome.SUPPRESSED):
            await self._resolve_pages(outcome)
        self.timeline.closed = workflow.now()
        self.index(str(outcome))
        self._explain(outcome, reason)
        result = LoopResult(
            workflow_id=workflow.info().workflow_id,
            loop=self.loop,
            subject=self.subject,
            outcome=outcome,
            mode=self.mode,
            reason=reason,
            policy=self.policy_name,
            policy_version=self.policy_version,
            actions=self.actions,
            timeline=self.timeline,
            human_touched=self.human_touched,
            approver=self.approver,
            undo=[entry.snapshot for entry in self.saga],
            undo_approvers=self.pinned_approvers,
            **extra,
        )
        await self.call_void("audit.close_run", result)
        self.step = Step.CLOSED
        return result

    async def _resolve_pages(self, outcome: Outcome) -> None:
        """Close the PagerDuty incidents this run opened; a failure is audited, not fatal."""
        for delivery in self.paged:
            closing = delivery.model_copy(update={"event": ChannelEvent.RESOLVE})
            try:
                await self.call("notify.send", closing, ChannelReceipt, NOTIFY)
            except ActivityError as error:
                await self._note(
                    "notify_failed", f"could not resolve the page on {delivery.channel.name}: {error}"
                )
                continue
            await self._note("notified", f"page on {delivery.channel.name} resolved: the run ended {outcome}")
        self.paged = []


def _automation_sentence(briefing: Briefing) -> str:
    if briefing.actions_taken:
        done = "; ".join(
            f"{action.type} on {action.target}{' (undone)' if action.compensated else ''}"
            for action in briefing.actions_taken
        )
        return f"suture did: {done}; then stopped because {briefing.reason}"
    if briefing.would_have_done:
        would = "; ".join(briefing.would_have_done)
        return f"suture would have done: {would}; it stopped because {briefing.reason}"
    return f"suture took no action: {briefing.reason}"


def _next_steps(briefing: Briefing, undo_left: bool) -> list[str]:
    steps = []
    asking = briefing.deadline is not None
    if asking:
        steps.append("read the evidence, then approve or reject with the commands below")
    if undo_left:
        steps.append("check the target: suture's change is still in place; `suture undo` reverses it")
    elif any(action.compensated for action in briefing.actions_taken):
        steps.append("suture's change was undone: the target is back as it was, and still unhealthy")
    if briefing.would_have_done and not asking:
        steps.append(
            "consider doing by hand what automation would have done: " + "; ".join(briefing.would_have_done)
        )
    if briefing.recent_changes:
        steps.append("look at the most recent change first: " + briefing.recent_changes[0])
    steps.append("watch the evidence queries until they are healthy again")
    return steps

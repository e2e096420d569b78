"""Earned trust: what suture has learned about a kind of incident, and how that shapes a plan.

Operators widen an automation's authority the way they do a new engineer's: after
watching it be right under supervision. This module holds the pure half of that:

* a policy's ``trust:`` block (how many supervised successes earn a promotion,
  what counts as novel, whether failures demote, how far the confidence floor may
  move);
* the :class:`IncidentSignature` of an incident (alert, service, kind of recent
  change, diagnosis), the unit the track record is kept in;
* the fold of audited facts into a :class:`TrackRecord` (used both when a run
  closes and when the record is rebuilt from the audit trail, so both agree);
* :func:`gate`, which turns a loop's plan into the plan suture may carry out given
  the store's assessment: a promotion or demotion of the action class, a time-bound
  exception on the target, a novel signature, a learned confidence floor.

Nothing here performs I/O: workflows call :func:`gate` with what the ``trust.assess``
activity read, and the audit store calls :func:`fold` and :func:`demotion_due`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, model_validator

from policies.durations import Seconds
from policies.plan import Plan, PlanOutcome
from policies.schema import PolicyModel
from suture.models import Contract, Loop, Mode, Outcome, RolloutHistory, Verdict

PROMOTION_LADDER = (Mode.OBSERVE, Mode.DRY_RUN, Mode.SUPERVISED, Mode.AUTONOMOUS)


class Novelty(StrEnum):
    """When an incident counts as new, and so goes to a human even under an autonomous policy."""

    ESCALATE = "escalate"
    """Known only once this exact signature has had a good outcome."""
    DECLARED = "declared"
    """A diagnosis the policy itself declares (its ``signatures:``, its signal or finding) is known too."""
    OFF = "off"
    """Novelty never stops an action (a signature seen only with bad outcomes still does)."""


class Demotion(StrEnum):
    """What an autonomous action that is undone, fails verification or is judged wrong does to its class."""

    SUPERVISED = "supervised"
    """The action class of the policy waits for approval from then on (until promoted again)."""
    OFF = "off"
    """Nothing changes; the track record still counts it."""


class ConfidenceBounds(PolicyModel):
    """How far the confidence floor may move from the policy's own, learned from the track record."""

    lowest: float = Field(ge=0.0, le=1.0)
    highest: float = Field(ge=0.0, le=1.0)
    step: float = Field(default=0.02, gt=0.0, le=0.2)
    """How much one verified success lowers the floor; one bad outcome raises it by 2.5 times this."""

    @model_validator(mode="after")
    def _ordered(self) -> ConfidenceBounds:
        if self.lowest > self.highest:
            raise ValueError(f"lowest {self.lowest} is above highest {self.highest}")
        return self


class Trust(PolicyModel):
    """A policy's ``trust:`` block. Every key is optional; omitted, the defaults below apply."""

    promote_after: int = Field(default=5, ge=1)
    """Supervised successes (none undone, rejected or failed) before a promotion is recommended."""
    novelty: Novelty = Novelty.DECLARED
    demotion: Demotion = Demotion.SUPERVISED
    confidence: ConfidenceBounds | None = None
    """Bounds of the learned confidence floor; without them the policy's own floor stays fixed."""
    shadow_window: Seconds = 600.0
    """In dry-run: how long to watch whether the condition clears by itself or a human fixes it."""


# --- signatures and the track record -------------------------------------------------------


class IncidentSignature(Contract):
    """What makes two incidents "the same kind": the unit of the track record."""

    loop: Loop
    alert: str
    """The alert's name, the security signal, or the resource finding."""
    service: str
    change: str = "none"
    """The kind of recent change: ``rollout`` (within the diagnosis window), ``none``, or the event's kind."""
    diagnosis: str = "unknown"

    def key(self) -> str:
        return "|".join((str(self.loop), self.alert, self.service, self.change, self.diagnosis))

    @classmethod
    def from_key(cls, key: str) -> IncidentSignature:
        loop, alert, service, change, diagnosis = key.split("|", 4)
        return cls(loop=Loop(loop), alert=alert, service=service, change=change, diagnosis=diagnosis)

    def shared(self, other: IncidentSignature) -> int:
        """How many fields two signatures share: the similarity the briefing's nearest incidents use."""
        fields = ("alert", "service", "change", "diagnosis")
        return sum(getattr(self, name) == getattr(other, name) for name in fields)


class ShadowScore(StrEnum):
    """What watching a dry-run incident showed about acting."""

    RIGHT = "right"
    """A human did the same fix within the window: acting would have been right."""
    NOT_HELPFUL = "not_helpful"
    """The condition cleared by itself within the window: acting would not have helped."""
    UNDECIDED = "undecided"
    """Neither happened within the window."""


class Feedback(StrEnum):
    USEFUL = "useful"
    WRONG = "wrong"
    UNNECESSARY = "unnecessary"


class RunFact(Contract):
    """One audited fact about a run, as the track record folds it."""

    workflow_id: str
    policy: str
    actions: list[str]
    signature: str
    outcome: Outcome | None = None
    mode: Mode | None = None
    verdict: Verdict | None = None
    compensated: bool = False
    verify_s: float | None = None
    shadow: ShadowScore | None = None
    undone: bool = False
    feedback: Feedback | None = None
    at: datetime | None = None


class TrackRecord(Contract):
    """Counts for one (policy, action, signature), derived from audited facts only."""

    policy: str
    action: str
    signature: str
    runs: int = 0
    successes: int = 0
    supervised_successes: int = 0
    autonomous_successes: int = 0
    undos: int = 0
    rejections: int = 0
    escalations: int = 0
    verify_failures: int = 0
    dry_runs: int = 0
    shadow_right: int = 0
    shadow_not_helpful: int = 0
    shadow_undecided: int = 0
    feedback_useful: int = 0
    feedback_wrong: int = 0
    feedback_unnecessary: int = 0
    verify_s_total: float = 0.0
    last_at: datetime | None = None

    @property
    def good(self) -> int:
        return self.successes + self.feedback_useful

    @property
    def bad(self) -> int:
        return self.undos + self.rejections + self.verify_failures + self.feedback_wrong

    @property
    def mean_verify_s(self) -> float | None:
        return self.verify_s_total / self.successes if self.successes else None


def fold(record: TrackRecord, fact: RunFact) -> TrackRecord:
    """``record`` with ``fact`` counted in. Counting is commutative, so order never matters."""
    counts = record.model_copy()
    if fact.undone:
        counts.undos += 1
    elif fact.feedback is not None:
        name = f"feedback_{fact.feedback.value}"
        setattr(counts, name, getattr(counts, name) + 1)
    elif fact.shadow is not None:
        name = f"shadow_{fact.shadow.value}"
        setattr(counts, name, getattr(counts, name) + 1)
    else:
        _count_outcome(counts, fact)
    if fact.at is not None and (counts.last_at is None or fact.at > counts.last_at):
        counts.last_at = fact.at
    return counts


def _count_outcome(counts: TrackRecord, fact: RunFact) -> None:
    counts.runs += 1
    if fact.outcome == Outcome.RESOLVED:
        counts.successes += 1
        counts.verify_s_total += fact.verify_s or 0.0
        if fact.mode == Mode.SUPERVISED:
            counts.supervised_successes += 1
        elif fact.mode == Mode.AUTONOMOUS:
            counts.autonomous_successes += 1
    elif fact.outcome == Outcome.REJECTED:
        counts.rejections += 1
    elif fact.outcome == Outcome.DRY_RUN:
        counts.dry_runs += 1
    elif fact.outcome == Outcome.ESCALATED:
        counts.escalations += 1
        if fact.verdict == Verdict.UNHEALTHY or fact.compensated:
            counts.verify_failures += 1


def demotion_due(fact: RunFact, trust: Trust | None = None) -> bool:
    """Whether ``fact`` demotes its action class: an autonomous action undone, failed or judged wrong."""
    if trust is not None and trust.demotion == Demotion.OFF:
        return False
    if fact.mode != Mode.AUTONOMOUS:
        return False
    failed = fact.outcome == Outcome.ESCALATED and (fact.verdict == Verdict.UNHEALTHY or fact.compensated)
    return fact.undone or fact.feedback == Feedback.WRONG or failed


# --- promotions ----------------------------------------------------------------------------


class Promotion(Contract):
    """A recommendation (never applied by itself) to widen one action class of one policy."""

    policy: str
    action: str
    current: Mode
    proposed: Mode
    supervised_successes: int
    needed: int
    undos: int
    rejections: int
    verify_failures: int
    feedback_wrong: int
    signatures: list[str]
    recommended: bool
    why: str


def promotion_for(
    policy: str, action: str, current: Mode, records: list[TrackRecord], trust: Trust
) -> Promotion:
    """Whether ``records`` of one (policy, action) earn the next rung, with the evidence."""
    supervised = sum(record.supervised_successes for record in records)
    undos = sum(record.undos for record in records)
    rejections = sum(record.rejections for record in records)
    failures = sum(record.verify_failures for record in records)
    wrong = sum(record.feedback_wrong for record in records)
    blemishes = undos + rejections + failures + wrong
    if current != Mode.SUPERVISED:
        recommended, why = False, f"the class is {current}; only supervised → autonomous is earned by runs"
    elif blemishes:
        recommended = False
        why = (
            f"{undos} undone, {rejections} rejected, {failures} failed verification, "
            f"{wrong} judged wrong: trust is not earned yet"
        )
    elif supervised < trust.promote_after:
        recommended, why = False, f"{supervised} of {trust.promote_after} supervised successes so far"
    else:
        recommended = True
        why = (
            f"{supervised} supervised successes (the policy asks {trust.promote_after}), "
            "none undone or rejected"
        )
    return Promotion(
        policy=policy,
        action=action,
        current=current,
        proposed=Mode.AUTONOMOUS if current == Mode.SUPERVISED else current,
        supervised_successes=supervised,
        needed=trust.promote_after,
        undos=undos,
        rejections=rejections,
        verify_failures=failures,
        feedback_wrong=wrong,
        signatures=sorted({record.signature for record in records}),
        recommended=recommended,
        why=why,
    )


# --- the decision-time gate ------------------------------------------------------------------


class TrustQuery(Contract):
    """Argument of ``trust.assess``: the incident, the plan's actions and the policy's trust block."""

    loop: Loop
    policy: str
    actions: list[str]
    targets: list[str]
    signature: IncidentSignature
    declared: bool
    """The diagnosis is one the policy itself declares."""
    trust: Trust = Trust()
    at: datetime


class ClassStanding(Contract):
    """One action class of the policy: its override in the store, if any, and its track record."""

    action: str
    override: Mode | None = None
    by: str = ""
    reason: str = ""
    record: TrackRecord | None = None


class PastIncident(Contract):
    """A past incident near this one, and what became of it."""

    workflow_id: str
    signature: str
    shared: int
    outcome: str
    resolution: str
    at: datetime | None = None


class TrustAssessment(Contract):
    """What the store knows that bears on this incident (answer of ``trust.assess``)."""

    standings: list[ClassStanding] = []
    exception: str | None = None
    """Why the target is exempt from actions now (who, why, until when); None when it is not."""
    good: int = 0
    """Good outcomes of this exact signature, under any policy."""
    bad: int = 0
    nearest: list[PastIncident] = []


class Gated(Contract):
    """The plan after the trust gate, and what the gate changed (for the audit and the briefing)."""

    plan: Plan
    notes: list[str] = []
    novel: bool = False


def novelty_of(query: TrustQuery, assessment: TrustAssessment) -> str | None:
    """Why the incident is new to suture (so a human takes it), or None when it is known."""
    if assessment.bad and not assessment.good:
        return f"signature {query.signature.key()} was seen only with bad outcomes ({assessment.bad})"
    if query.trust.novelty == Novelty.OFF or assessment.good:
        return None
    if query.trust.novelty == Novelty.DECLARED and query.declared:
        return None
    return f"signature {query.signature.key()} was never seen with a good outcome"


def gate(plan: Plan, query: TrustQuery, assessment: TrustAssessment, has_approvers: bool) -> Gated:
    """Apply promotions, demotions, exceptions and novelty to a plan; never grants more than earned.

    Only a plan that acts is changed: an exception or a novel signature hands it to a
    human, an override sets its actions' mode (a demotion to supervised escalates
    instead when the policy names nobody to approve).
    """
    if plan.outcome != PlanOutcome.ACT:
        return Gated(plan=plan)
    notes: list[str] = []
    if assessment.exception is not None:
        return Gated(plan=_escalate(plan, assessment.exception), notes=[assessment.exception])
    mode = plan.mode
    for standing in assessment.standings:
        if standing.override is None or standing.override == mode:
            continue
        if standing.override == Mode.AUTONOMOUS and mode == Mode.SUPERVISED:
            notes.append(f"{standing.action} was promoted to autonomous by {standing.by}: {standing.reason}")
            mode = Mode.AUTONOMOUS
        elif standing.override == Mode.SUPERVISED and mode == Mode.AUTONOMOUS:
            notes.append(f"{standing.action} is demoted to supervised: {standing.reason}")
            mode = Mode.SUPERVISED
    if mode == Mode.AUTONOMOUS:
        novel = novelty_of(query, assessment)
        if novel is not None:
            notes.append(f"novel incident: {novel}; a human decides")
            return Gated(plan=_escalate(plan, notes[-1], mode), notes=notes, novel=True)
    if mode == Mode.SUPERVISED and not has_approvers:
        reason = "; ".join(notes) + "; the policy names no approvers, so a human takes over"
        return Gated(plan=_escalate(plan, reason, mode), notes=notes)
    if mode == plan.mode:
        return Gated(plan=plan, notes=notes)
    actions = [action.model_copy(update={"mode": mode}) for action in plan.actions]
    changed = plan.model_copy(
        update={"mode": mode, "actions": actions, "reason": f"{plan.reason}; {notes[-1]}"}
    )
    return Gated(plan=changed, notes=notes)


def _escalate(plan: Plan, reason: str, mode: Mode | None = None) -> Plan:
    return Plan(
        outcome=PlanOutcome.ESCALATE,
        mode=mode or plan.mode,
        reason=reason,
        would_have_done=plan.would_have_done,
    )


# --- confidence that learns -------------------------------------------------------------------


class LearnedConfidence(Contract):
    """A diagnosis's confidence after its inputs, and the floor it is held to now."""

    value: float
    required: float
    lowered_by: list[str] = []


def learned_confidence(
    diagnosis_confidence: float,
    floor: float,
    bounds: ConfidenceBounds | None,
    records: list[TrackRecord],
    evidence_age_s: float | None,
    max_age_s: float,
) -> LearnedConfidence:
    """Confidence from the diagnosis, the evidence's freshness and the signature's record.

    The floor moves within ``bounds`` only: each verified success of the signature
    lowers it by ``step``, each bad outcome raises it by 2.5 steps. Stale evidence
    lowers the confidence only for a policy that opted into learning (``bounds``).
    """
    value, lowered = diagnosis_confidence, []
    good = sum(record.good for record in records)
    bad = sum(record.bad for record in records)
    if bounds is not None and evidence_age_s is not None and evidence_age_s > max_age_s:
        value -= 0.1
        lowered.append(f"evidence is {evidence_age_s:.0f}s old (fresher than {max_age_s:.0f}s expected)")
    if bad > good:
        value -= 0.15
        lowered.append(f"the signature's track record: {bad} bad outcomes against {good} good")
    value = min(max(value, 0.0), 1.0)
    required = floor
    if bounds is not None:
        required = floor - bounds.step * good + bounds.step * 2.5 * bad
        required = min(max(required, bounds.lowest), bounds.highest)
        if required > floor:
            lowered.append(f"the learned floor rose to {required:.2f} after {bad} bad outcomes")
    return LearnedConfidence(value=round(value, 4), required=round(required, 4), lowered_by=lowered)


# --- what a run writes to the audit trail ---------------------------------------------------

TRUST_EVIDENCE = "suture.trust"
"""``Evidence.source`` of the trust facts a run audits (its assessment, its shadow score)."""
ASSESSED = "assessed"
"""The audit step (and evidence query) naming a run's signature and planned actions."""
SHADOW = "shadow"
"""The audit step (and evidence query) of a dry-run's shadow score."""
FEEDBACK = "feedback"


class AssessedIncident(Contract):
    """The audited record of a run's signature: the track record is rebuilt from these."""

    policy: str
    actions: list[str]
    signature: IncidentSignature
    demotion: Demotion = Demotion.SUPERVISED


RECENT_CHANGE_S = 3600.0
"""A rollout younger than this is the incident's "recent change"."""


def change_kind(history: RolloutHistory | None, now: datetime) -> str:
    """The recent change of a Deployment's signature: ``rollout``, ``none``, or ``unknown`` (unread)."""
    if history is None:
        return "unknown"
    for rollout in history.rollouts:
        if rollout.revision == history.current_revision:
            recent = (now - rollout.created_at).total_seconds() <= RECENT_CHANGE_S
            return "rollout" if recent else "none"
    return "none"

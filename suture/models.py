"""The contracts carried between the ingress, the workflows and the activities.

Every workflow and activity takes one of these models and returns one, so that a
field can be added later without breaking histories already recorded. They travel
through Temporal with ``temporalio.contrib.pydantic.pydantic_data_converter``.
Nothing here performs I/O: workflow code imports this module.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from suture.people import PersonName

MAX_NAME = 64
"""Longest person name accepted in a signal, an update or a CLI ``--as``."""
MAX_NOTE = 2000
"""Longest free-text note a human attaches to a decision."""


class Contract(BaseModel):
    """Base for every payload: unknown fields are refused, never dropped silently."""

    model_config = ConfigDict(extra="forbid")


class Loop(StrEnum):
    RELIABILITY = "reliability"
    SECURITY = "security"
    RESOURCE = "resource"


class Mode(StrEnum):
    """How much authority a policy grants, from least to most."""

    OBSERVE = "observe"
    DRY_RUN = "dry_run"
    SUPERVISED = "supervised"
    AUTONOMOUS = "autonomous"


class Outcome(StrEnum):
    """How a run ended; one per run, also the ``SutureOutcome`` search attribute."""

    RESOLVED = "resolved"
    ESCALATED = "escalated"
    ROLLED_BACK = "rolled_back"
    DRY_RUN = "dry_run"
    REJECTED = "rejected"
    SUPPRESSED = "suppressed"


class Verdict(StrEnum):
    """What verification concluded. ``unknown`` means the signal could not be trusted."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class Evidence(Contract):
    """One observation that justified a step: where it came from, what, when."""

    source: str
    query: str
    value: float | str | None = None
    at: datetime
    note: str = ""


class Target(Contract):
    """The narrowest resource an action touches.

    ``scope`` is the namespace for Kubernetes objects and the account for AWS ones.
    """

    kind: str
    scope: str
    name: str

    def __str__(self) -> str:
        return f"{self.scope}/{self.name}"


# --- signals in -------------------------------------------------------------------


class AlertNotice(Contract):
    """One alert from an Alertmanager webhook, as delivered to a reliability loop."""

    fingerprint: str
    status: str = Field(pattern="^(firing|resolved)$")
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    received_at: datetime


class ReliabilityLoopInput(Contract):
    alert: AlertNotice
    joined: list[AlertNotice] = []
    """For a storm's run on its root: the alerts of the storm, kept as evidence."""


class ApprovalDecision(Contract):
    """Payload of the ``approve`` and ``reject`` signals."""

    approver: PersonName
    note: str = Field(default="", max_length=MAX_NOTE)


class ApprovalAnswer(StrEnum):
    """How a wait for approval ended."""

    APPROVE = "approve"
    REJECT = "reject"
    TIMEOUT = "timeout"
    CLEARED = "cleared"
    """The condition that started the run went away before anyone answered."""


class ApprovalRequest(Contract):
    """Argument of the ``decide`` update: an approval or rejection answered at once."""

    answer: ApprovalAnswer
    approver: PersonName
    note: str = Field(default="", max_length=MAX_NOTE)

    def decision(self) -> ApprovalDecision:
        return ApprovalDecision(approver=self.approver, note=self.note)


class ApprovalReceipt(Contract):
    """What the ``decide`` update answers once the run has taken the decision."""

    workflow_id: str
    answer: ApprovalAnswer
    approver: str
    policy: str | None = None


class Step(StrEnum):
    """Where a run is; also the ``step`` of the audit entries it writes."""

    STARTING = "starting"
    AWAITING_APPROVAL = "awaiting_approval"
    VERIFYING = "verifying"
    CLOSED = "closed"


# --- detect and diagnose ----------------------------------------------------------


class EvidenceRequest(Contract):
    """Queries to run against Prometheus, already rendered for one subject."""

    queries: list[str]


class EvidenceReport(Contract):
    evidence: list[Evidence]


class Rollout(Contract):
    """One revision of a Deployment, read from its ReplicaSet."""

    revision: int
    replicaset: str
    images: list[str]
    created_at: datetime


class RolloutHistory(Contract):
    """A Deployment's rollout history, newest revision first."""

    target: Target
    current_revision: int
    rollouts: list[Rollout]


class Diagnosis(Contract):
    signature: str | None
    confidence: float
    summary: str
    recent_changes: list[str] = []
    lowered_by: list[str] = []
    """Inputs that lowered the confidence below the diagnosis's own (evidence age, track record)."""


# --- act ------------------------------------------------------------------------


class PlannedAction(Contract):
    """An action the decision step chose, with its business idempotency key.

    The key is built from the incident (alert fingerprint and start, or event id)
    plus the action type and target, so a retried activity or a duplicate run can
    recognise work already done.
    """

    type: str
    target: Target
    params: dict[str, Any] = {}
    mode: Mode
    idempotency_key: str


class Snapshot(Contract):
    """The state an action's undo restores, captured before the action runs."""

    action: PlannedAction
    state: dict[str, Any]


class ActionOutcome(Contract):
    """What a do or undo activity did. ``changed`` is false when already in the target state."""

    action: PlannedAction
    changed: bool
    detail: str
    evidence: list[Evidence] = []


class ActionRecord(Contract):
    """An action as reported in a run's result and in drill output."""

    type: str
    target: str
    mode: Mode
    compensated: bool = False
    detail: str = ""
    started_at: datetime | None = None
    savings_usd_month: float | None = None
    """For a resource action: what it saves per month at list price."""


# --- verify -----------------------------------------------------------------------


class HealthCheck(Contract):
    """A verification query and the condition its value must meet to count as healthy."""

    query: str
    operator: str = Field(pattern="^(<|<=|>|>=|==|!=)$")
    threshold: float
    max_staleness_s: float = 15.0
    changed_at: datetime | None = None
    """When the action under verification changed the world: the healthy report then says when
    the signal first met its condition after it (the verification lag)."""


class HealthReport(Contract):
    verdict: Verdict
    reason: str
    evidence: list[Evidence] = []
    first_met_at: datetime | None = None
    """For a healthy check with ``changed_at``: the first sample after the change from which the
    condition held to the end."""


# --- audit, locks, escalation ----------------------------------------------------------


class AuditEntry(Contract):
    """One audited step. ``(workflow_id, seq)`` makes writing it idempotent."""

    workflow_id: str
    seq: int
    loop: Loop
    subject: str
    step: str
    detail: str
    actor: str = "suture"
    evidence: list[Evidence] = []
    at: datetime


class TargetClaim(Contract):
    """Ask for the per-resource lock, honouring the cooldown since the last action."""

    target: str
    workflow_id: str
    cooldown_s: float


class ClaimResult(Contract):
    granted: bool
    reason: str = ""


class TargetRelease(Contract):
    target: str
    workflow_id: str
    acted: bool


class ChannelKind(StrEnum):
    """Where a briefing can be sent."""

    SLACK = "slack"
    """A Slack incoming webhook: a Block Kit message."""
    PAGERDUTY = "pagerduty"
    """PagerDuty Events API v2: trigger on escalation, resolve when the run resolves."""
    WEBHOOK = "webhook"
    """Any receiver: the briefing as JSON."""


class Channel(Contract):
    """One escalation channel of a policy's ``notify:`` block.

    Secrets stay out of policy files: ``url_env`` and ``routing_key_env`` name the
    environment variables of the worker that hold them; ``url`` and
    ``routing_key`` may be given directly for a local receiver.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: ChannelKind
    url: str = ""
    url_env: str = ""
    routing_key: str = ""
    routing_key_env: str = ""


class ChannelRoute(Contract):
    """Send to ``channels`` (in order, each a fallback of the one before) when the labels match."""

    labels: dict[str, str] = Field(min_length=1)
    """e.g. ``{team: payments}`` or ``{owner: alice}``: every key must equal the alert's."""
    channels: list[str] = Field(min_length=1)


class Confidence(Contract):
    """How sure suture was, and what lowered it."""

    value: float
    required: float | None = None
    lowered_by: list[str] = []


class Commands(Contract):
    """The exact commands a human runs to answer a run."""

    approve: str = ""
    reject: str = ""
    undo: str = ""
    status: str = ""


class Briefing(Contract):
    """What a human needs to take over: impact, scope, evidence, what automation did and why it stopped.

    Fields after ``dependents`` were added later; all are optional so that
    briefings recorded in older histories still decode.
    """

    workflow_id: str
    loop: Loop
    title: str
    subject: str
    impact: str
    scope: str
    reason: str
    evidence: list[Evidence] = []
    recent_changes: list[str] = []
    would_have_done: list[str] = []
    actions_taken: list[ActionRecord] = []
    dependents: list[str] = []
    service: str = ""
    """The affected service (``namespace/name`` or the AWS resource)."""
    users_affected: str = ""
    """Who notices, when known (e.g. from the alert's ``users`` annotation)."""
    severity: str = ""
    """``critical``, ``error``, ``warning`` or ``info`` (PagerDuty's scale); from the alert."""
    labels: dict[str, str] = {}
    """The signal's labels: routing reads ``team`` and ``owner`` here."""
    evidence_age_s: float | None = None
    """Age of the newest evidence when the briefing was written (its freshness)."""
    automation: str = ""
    """What automation did, or would have done, in one sentence."""
    confidence: Confidence | None = None
    next_steps: list[str] = []
    commands: Commands | None = None
    tier: int | None = None
    """For an approval request: the escalation tier now asked (1 is the first)."""
    approvers: list[str] = []
    deadline: datetime | None = None
    """For an approval request: when the current tier's wait ends."""
    written_at: datetime | None = None
    channels: list[Channel] = []
    """Where to send it, in order: each channel is the fallback of the one before."""
    routes: list[ChannelRoute] = []
    trust: list[str] = []
    """What earned trust changed about this run: a promotion, a demotion, an exception, novelty."""
    nearest_incidents: list[str] = []
    """For a novel incident: the nearest past incidents (by shared signature fields) and their ends."""


class ChannelEvent(StrEnum):
    TRIGGER = "trigger"
    """A human is needed: page, post the briefing."""
    RESOLVE = "resolve"
    """The run that paged resolved: close the page."""


class ChannelDelivery(Contract):
    """Argument of ``notify.send``: one briefing to one channel."""

    channel: Channel
    briefing: Briefing
    event: ChannelEvent = ChannelEvent.TRIGGER


class ChannelReceipt(Contract):
    channel: str
    kind: ChannelKind
    status: int
    detail: str = ""


class Timeline(Contract):
    detected: datetime | None = None
    decided: datetime | None = None
    approved: datetime | None = None
    acted: datetime | None = None
    verified: datetime | None = None
    closed: datetime | None = None


class LoopResult(Contract):
    """How one run ended; also what the audit store keeps per run."""

    workflow_id: str
    loop: Loop
    subject: str
    outcome: Outcome
    mode: Mode | None = None
    reason: str
    policy: str | None = None
    policy_version: str | None = None
    verdict: Verdict | None = None
    actions: list[ActionRecord] = []
    timeline: Timeline
    human_touched: bool = False
    approver: str | None = None
    briefing: Briefing | None = None
    received_at: datetime | None = None
    undo: list[Snapshot] = []
    """Compensations still available, newest last: what ``suture undo`` would run."""
    undo_approvers: list[str] = []
    """Who may order ``undo``: the approvers of the policy pinned when the run started."""


class LoopStatus(Contract):
    """Answer of the ``status`` query: where a run is and what it has seen."""

    step: str
    mode: Mode | None
    policy: str | None
    evidence: list[Evidence]
    pending_approval: bool
    ignored_approvers: list[str]
    approvers: list[str] = []
    """Who may answer this run's approval (from its pinned policy)."""
    subject: str = ""
    proposed_actions: list[str] = []
    """What the run will do once approved: ``type on target``."""
    tier: int | None = None
    """The escalation tier now waiting (1 is the first); None without tiers."""
    tiers: int | None = None
    deadline: datetime | None = None
    """When the current wait for approval ends."""
    tier_history: list[str] = []


class UndoRequest(Contract):
    """A human orders the compensations a finished run left in place.

    Only the run's ID, the person and a note come from the caller: what to undo
    and who may order it are read from the finished run itself, inside Temporal.
    """

    run_workflow_id: str = Field(min_length=1, max_length=1000)
    requested_by: PersonName
    note: str = Field(default="", max_length=MAX_NOTE)


class RunRef(Contract):
    workflow_id: str


class FinishedRun(Contract):
    """A run as Temporal keeps it once closed: its type, status and (if completed) result."""

    workflow_id: str
    workflow_type: str = ""
    status: str
    result: LoopResult | None = None


class UndoReceipt(Contract):
    """What the ``authorisation`` update of an undo answers once authority is checked."""

    workflow_id: str
    run_workflow_id: str
    requested_by: str
    actions: list[str]


# --- security loop ------------------------------------------------------------------


class AwsPrincipal(Contract):
    """Who made an AWS API call: the CloudTrail record's ``userIdentity``, flattened."""

    type: str
    arn: str = ""
    account: str = ""
    access_key_id: str = ""
    user_name: str = ""
    role_arn: str = ""
    """For an ``AssumedRole`` session, the role that issued it."""

    def __str__(self) -> str:
        return self.arn or self.user_name or self.access_key_id or self.type


class AwsEvent(Contract):
    """One CloudTrail record as EventBridge delivered it, reduced to what detection reads."""

    event_id: str
    """The EventBridge event id: delivering the same event twice never starts a second run."""
    account: str
    region: str
    event_name: str
    event_source: str
    event_time: datetime
    principal: AwsPrincipal
    source_ip: str = ""
    user_agent: str = ""
    request_parameters: dict[str, Any] = {}
    response_elements: dict[str, Any] = {}
    error_code: str = ""
    cloudtrail_event_id: str = ""
    received_at: datetime


class SecurityLoopInput(Contract):
    event: AwsEvent


class CredentialQuery(Contract):
    """Calls made with one credential between ``start`` and ``end``, read from the trail log.

    Exactly one of ``access_key_id`` (an IAM user's key) and ``role_arn`` (every
    session of a role) names the credential.
    """

    account: str
    region: str
    access_key_id: str = ""
    role_arn: str = ""
    start: datetime
    end: datetime | None = None
    exclude_event_ids: list[str] = []


class CredentialActivity(Contract):
    """What one credential did in a window: the baseline, or its use after containment."""

    calls: int
    successful_calls: int
    source_ips: list[str] = []
    event_names: list[str] = []
    user_agents: list[str] = []
    first_call_at: datetime | None = None
    last_success_at: datetime | None = None
    source: str
    """Where the calls were read, e.g. ``cloudwatch-logs:<log group>``."""


class PolicyDocumentRequest(Contract):
    account: str
    region: str
    policy_arn: str


class PolicyDocument(Contract):
    """The default version of a managed IAM policy."""

    policy_arn: str
    document: dict[str, Any]


class RoleDependentsRequest(Contract):
    account: str
    region: str
    role_arn: str


class RoleDependents(Contract):
    """What runs with a role's credentials: revoking the role's sessions stops all of it."""

    role_arn: str
    dependents: list[str]


class ContainmentCheck(Contract):
    """Re-read what a containment action changed, once its propagation window has passed.

    For a credential, calls that succeeded more than ``grace_s`` after
    ``contained_at`` mean the containment did not hold.
    """

    action: PlannedAction
    contained_at: datetime
    grace_s: float = 2.0


# --- kill switch ------------------------------------------------------------------------


class KillSwitchQuery(Contract):
    """Ask whether ``loop`` may act now: is it, or every loop, paused?"""

    loop: Loop


class KillSwitchState(Contract):
    """Answer of the kill switch. When paused, ``scope`` is ``all`` or the loop's name."""

    paused: bool
    scope: str = ""
    by: str = ""
    reason: str = ""

    def __str__(self) -> str:
        if not self.paused:
            return "not paused"
        which = "every loop" if self.scope == "all" else f"the {self.scope} loop"
        return f"kill switch on {which}, pulled by {self.by}: {self.reason or 'no reason given'}"

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


class ApprovalDecision(Contract):
    """Payload of the ``approve`` and ``reject`` signals."""

    approver: str = Field(min_length=1)
    note: str = ""


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


# --- verify -----------------------------------------------------------------------


class HealthCheck(Contract):
    """A verification query and the condition its value must meet to count as healthy."""

    query: str
    operator: str = Field(pattern="^(<|<=|>|>=|==|!=)$")
    threshold: float
    max_staleness_s: float = 15.0


class HealthReport(Contract):
    verdict: Verdict
    reason: str
    evidence: list[Evidence] = []


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


class Briefing(Contract):
    """What a human needs to take over: impact, scope, evidence, what automation did and why it stopped."""

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


class LoopStatus(Contract):
    """Answer of the ``status`` query: where a run is and what it has seen."""

    step: str
    mode: Mode | None
    policy: str | None
    evidence: list[Evidence]
    pending_approval: bool
    ignored_approvers: list[str]


class UndoRequest(Contract):
    """A human orders the compensations a finished run left in place."""

    run_workflow_id: str
    loop: Loop
    subject: str
    requested_by: str = Field(min_length=1)
    note: str = ""
    undo: list[Snapshot]

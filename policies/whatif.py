"""What a policy would decide for one recorded alert or audit event, without acting.

``suture policy test`` and ``suture policy backtest`` answer "what if this policy
had been in force?" with the decision code the workflows run: policy selection
(:func:`policies.engine.select_policy`), the reliability engine
(:func:`policies.diagnosis.diagnose` and :func:`policies.engine.decide`), and the
security detection and containment planner (:mod:`policies.detection`,
:func:`policies.containment.plan_containment`). Only the inputs a workflow would
read from the world are replaced by a :class:`Stub`, and every answer says which
ones and how, because a decision can never be better than those inputs:

* reliability: the Deployment's rollout history (the diagnosis matches signatures
  against the age of the current revision);
* security: a credential's baseline of past calls, and the document of a customer
  managed policy.

What comes after the decision in a run is left out on purpose and said so: the trust
gate (promotions, demotions, exceptions, novelty read from the audit store), the
activation stage, the kill switch, locks and cooldowns. They change *whether* a run
may carry a decision out, not what the policy decides.

A run keeps its input in its ``detected`` audit entry (evidence source
:data:`INPUT_EVIDENCE`), so the backtest replays exactly what each run received.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from policies.containment import plan_containment
from policies.detection import (
    Finding,
    assess_bucket,
    assess_credential,
    assess_ingress,
    assess_policy_attachment,
    labels_of,
    needs_baseline,
    signal_of,
)
from policies.diagnosis import diagnose
from policies.engine import decide, select_policy, target_of
from policies.models import Policy, ReliabilityPolicy
from policies.plan import Plan
from policies.scope import SignalType
from policies.security_policy import SecurityPolicy
from suture.identity import reliability_incident_key
from suture.models import (
    AlertNotice,
    AwsEvent,
    Contract,
    CredentialActivity,
    Evidence,
    Loop,
    Mode,
    Rollout,
    RolloutHistory,
    Target,
)

INPUT_EVIDENCE = "suture.input"
"""``Evidence.source`` of the input a run received, kept in its ``detected`` audit entry."""

NOT_APPLIED = (
    "not applied here: the trust gate (promotions, demotions, exceptions, novelty), the activation "
    "stage, the kill switch, per-target locks and cooldowns; they decide whether a run may carry "
    "the decision out"
)


class Stub(Contract):
    """The inputs a workflow reads from the world, as a what-if assumes them."""

    rollout_age_s: float | None = None
    """Age of the Deployment's current revision when the alert fired; None: no rollout history."""
    familiar_credential: bool = False
    """Whether the credential's baseline already holds this source, API and user agent."""


class Verdict(StrEnum):
    """What the policy decides for one input."""

    ACT = "act"
    DRY_RUN = "dry_run"
    ESCALATE = "escalate"
    SUPPRESSED = "suppressed"
    NO_POLICY = "no_policy"
    """No policy matches; a reliability run hands it to a human, a security run records and ignores it."""


class WhatIf(Contract):
    """One decision, explained."""

    loop: Loop
    subject: str
    policy: str | None = None
    policy_version: str = ""
    verdict: Verdict
    mode: Mode | None = None
    actions: list[str] = []
    """``type on target`` of every action the decision would take (after approval when supervised)."""
    reason: str
    would_have_done: list[str] = []
    stubbed: list[str] = []
    """Which inputs were assumed, and how."""
    not_applied: str = NOT_APPLIED

    def acts(self) -> list[str]:
        return self.actions if self.verdict == Verdict.ACT else []


def decide_input(policies: list[Policy], given: AlertNotice | AwsEvent, stub: Stub) -> WhatIf:
    """What ``policies`` decide for one alert or event, with ``stub`` for what is read at run time."""
    if isinstance(given, AlertNotice):
        return decide_alert(policies, given, stub)
    return decide_event(policies, given, stub)


def decide_alert(policies: list[Policy], alert: AlertNotice, stub: Stub) -> WhatIf:
    labels = alert.labels
    subject = f"{labels.get('namespace', '-')}/{labels.get('service', labels.get('deployment', '-'))}"
    mine = [policy for policy in policies if policy.loop == Loop.RELIABILITY]
    policy = select_policy(mine, labels)
    if not isinstance(policy, ReliabilityPolicy):
        reason = f"no policy matches {labels.get('alertname', 'the alert')} ({len(mine)} considered)"
        return WhatIf(loop=Loop.RELIABILITY, subject=subject, verdict=Verdict.NO_POLICY, reason=reason)
    target = target_of(policy, labels)
    if target is None:
        reason = f"the alert lacks the labels that name the {policy.target.kind}; a human gets it"
        return _answer(Loop.RELIABILITY, subject, policy, None, reason)
    history, assumed = _rollout_stub(target, alert.starts_at, stub.rollout_age_s)
    diagnosis = diagnose(policy, history, alert.starts_at)
    plan = decide(policy, diagnosis, target, reliability_incident_key(alert))
    stubbed = [f"diagnosis: {assumed}; it matched {diagnosis.signature or 'no signature'}"]
    return _answer(Loop.RELIABILITY, subject, policy, plan, plan.reason, stubbed)


def _rollout_stub(
    target: Target, fired_at: datetime, age_s: float | None
) -> tuple[RolloutHistory | None, str]:
    if age_s is None:
        return None, "no rollout history (a run reads it from the Deployment)"
    current = Rollout(
        revision=2, replicaset="what-if", images=[], created_at=fired_at - timedelta(seconds=age_s)
    )
    history = RolloutHistory(target=target, current_revision=2, rollouts=[current])
    return history, f"the current revision rolled out {age_s:.0f}s before the alert fired"


def decide_event(policies: list[Policy], event: AwsEvent, stub: Stub) -> WhatIf:
    subject = f"{event.event_name} by {event.principal}"
    signal = signal_of(event)
    if signal is None:
        reason = f"no detection rule applies to {event.event_name} by a {event.principal.type} principal"
        return WhatIf(loop=Loop.SECURITY, subject=subject, verdict=Verdict.SUPPRESSED, reason=reason)
    mine = [policy for policy in policies if policy.loop == Loop.SECURITY]
    policy = select_policy(mine, labels_of(event, signal))
    if not isinstance(policy, SecurityPolicy):
        reason = f"no security policy governs {signal} in account {event.account} ({len(mine)} considered)"
        return WhatIf(loop=Loop.SECURITY, subject=subject, verdict=Verdict.NO_POLICY, reason=reason)
    finding, stubbed = _finding(policy, event, signal, stub)
    plan = plan_containment(policy, finding, event.event_id)
    return _answer(Loop.SECURITY, subject, policy, plan, plan.reason, stubbed)


def _finding(
    policy: SecurityPolicy, event: AwsEvent, signal: SignalType, stub: Stub
) -> tuple[Finding, list[str]]:
    rules = policy.detection
    if signal == SignalType.INGRESS_OPENED:
        return assess_ingress(event, rules), []
    if signal == SignalType.BUCKET_PUBLIC_ACCESS:
        return assess_bucket(event, rules), []
    if signal == SignalType.POLICY_ATTACHED:
        arn = str(event.request_parameters.get("policyArn", ""))
        if arn in rules.admin_policies:
            return assess_policy_attachment(event, rules, None), []
        note = f"the document of {arn or 'the policy'} was not read (a run reads it): judged not admin"
        return assess_policy_attachment(event, rules, None), [note]
    assert needs_baseline(signal)
    if stub.familiar_credential:
        baseline = CredentialActivity(
            calls=100,
            successful_calls=100,
            source_ips=[event.source_ip] if event.source_ip else [],
            event_names=[event.event_name],
            user_agents=[event.user_agent] if event.user_agent else [],
            source="what-if",
        )
        note = "baseline: the credential's past calls include this source, API and user agent"
    else:
        baseline = CredentialActivity(calls=0, successful_calls=0, source="what-if")
        note = "baseline: no past calls with this credential (a run reads them from the trail)"
    return assess_credential(event, rules, baseline), [note]


def _answer(
    loop: Loop,
    subject: str,
    policy: ReliabilityPolicy | SecurityPolicy,
    plan: Plan | None,
    reason: str,
    stubbed: list[str] | None = None,
) -> WhatIf:
    return WhatIf(
        loop=loop,
        subject=subject,
        policy=policy.name,
        policy_version=policy.version,
        verdict=Verdict(str(plan.outcome)) if plan is not None else Verdict.ESCALATE,
        mode=plan.mode if plan is not None else policy.mode,
        actions=[f"{action.type} on {action.target}" for action in plan.actions] if plan else [],
        reason=reason,
        would_have_done=plan.would_have_done if plan is not None else [],
        stubbed=stubbed or [],
    )


# --- what a run keeps, and how two decisions differ ---------------------------------------------


def input_evidence(given: AlertNotice | AwsEvent) -> Evidence:
    """The evidence item that keeps a run's input in its ``detected`` audit entry."""
    kind = "alertmanager" if isinstance(given, AlertNotice) else "eventbridge"
    return Evidence(
        source=INPUT_EVIDENCE,
        query=kind,
        value=given.model_dump_json(),
        at=given.received_at,
        note="the run's input, kept for suture policy backtest",
    )


def input_of(evidence: Evidence) -> AlertNotice | AwsEvent | None:
    """The input an ``input_evidence`` item keeps; None for any other evidence."""
    if evidence.source != INPUT_EVIDENCE or not isinstance(evidence.value, str):
        return None
    if evidence.query == "alertmanager":
        return AlertNotice.model_validate_json(evidence.value)
    return AwsEvent.model_validate_json(evidence.value)


class Change(StrEnum):
    """How a changed policy set's decision differs from the current one's, for one input."""

    SAME = "same"
    MORE = "more actions"
    FEWER = "fewer actions"
    DIFFERENT = "different"


def change_between(before: WhatIf, after: WhatIf) -> Change:
    """More actions, fewer, different (other actions, mode, outcome or policy), or the same."""
    old, new = before.acts(), after.acts()
    if len(new) > len(old):
        return Change.MORE
    if len(new) < len(old):
        return Change.FEWER
    same = (before.policy, before.verdict, before.mode, sorted(old)) == (
        after.policy,
        after.verdict,
        after.mode,
        sorted(new),
    )
    return Change.SAME if same else Change.DIFFERENT

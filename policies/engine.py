"""Decide what to do about a diagnosed incident, under its policy.

Pure functions only: the workflow calls them with the policy pinned at the start
of the run, so a decision replays identically and a policy edit never reaches a
run in flight.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from policies.models import Policy, ReliabilityPolicy
from policies.plan import Plan, PlanOutcome
from policies.queries import build_query
from policies.registry import action_spec
from suture.models import Diagnosis, Mode, PlannedAction, Target

Decision = Plan
"""The reliability engine's plan (one shape for every loop: :class:`policies.plan.Plan`)."""


def select_policy(policies: Sequence[Policy], labels: dict[str, str]) -> Policy | None:
    """The first policy whose match accepts ``labels``, in load order."""
    return next((policy for policy in policies if policy.match.accepts(labels)), None)


class PolicyQueries(BaseModel):
    """A policy's evidence and verification queries, built for one alert's labels."""

    model_config = ConfigDict(extra="forbid")

    evidence: list[str]
    verify: str


def queries_for(
    policy: ReliabilityPolicy, labels: dict[str, str], *, refuse_unsafe: bool = True
) -> PolicyQueries:
    """The policy's queries with the alert's labels quoted in (see :mod:`policies.queries`).

    Raises:
        LabelRefused: a label the queries name is missing or unsafe to put into PromQL.
    """
    evidence = [build_query(query, labels, refuse_unsafe=refuse_unsafe) for query in policy.evidence]
    verify = build_query(policy.verify.query, labels, refuse_unsafe=refuse_unsafe)
    return PolicyQueries(evidence=evidence, verify=verify)


def target_of(policy: ReliabilityPolicy, labels: dict[str, str]) -> Target | None:
    namespace = labels.get(policy.target.namespace_label)
    name = labels.get(policy.target.name_label)
    if not namespace or not name:
        return None
    return Target(kind=policy.target.kind, scope=namespace, name=name)


def decide(policy: ReliabilityPolicy, diagnosis: Diagnosis, target: Target, incident_key: str) -> Plan:
    """Turn a diagnosis into a decision; never grants more than the policy's mode."""
    actions = [
        PlannedAction(
            type=step.type,
            target=target,
            params=step.params,
            mode=policy.mode,
            idempotency_key=f"{incident_key}:{step.type}:{target}",
        )
        for step in policy.actions
    ]
    would = [f"{action_spec(a.type).summary} ({a.type} on {a.target})" for a in actions]
    if diagnosis.confidence < policy.min_confidence:
        return Plan(
            outcome=PlanOutcome.ESCALATE,
            mode=policy.mode,
            reason=(
                f"confidence {diagnosis.confidence:.2f} is below the policy's "
                f"{policy.min_confidence:.2f} ({diagnosis.summary})"
            ),
            would_have_done=would,
        )
    if policy.mode in (Mode.OBSERVE, Mode.DRY_RUN):
        return Plan(
            outcome=PlanOutcome.DRY_RUN,
            mode=policy.mode,
            reason=f"policy mode is {policy.mode}",
            would_have_done=would,
        )
    return Plan(
        outcome=PlanOutcome.ACT,
        mode=policy.mode,
        reason=f"{diagnosis.summary} (confidence {diagnosis.confidence:.2f})",
        actions=actions,
        would_have_done=would,
    )

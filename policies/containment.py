"""Containment planning: a finding and its pinned policy become a plan, never beyond the index.

Pure code the security loop replays: the finding, the policy and the incident key
decide the plan, so a policy edit never reaches a run in flight.
"""

from __future__ import annotations

from policies.detection import Finding
from policies.plan import Plan, PlanOutcome
from policies.scope import CONTAINMENT_SCOPE_INDEX
from policies.security_policy import SecurityPolicy
from suture.models import Mode, PlannedAction

ContainmentPlan = Plan
"""The containment planner's plan (one shape for every loop: :class:`policies.plan.Plan`)."""


def plan_containment(policy: SecurityPolicy, finding: Finding, incident_key: str) -> Plan:
    """Turn a finding into a plan under ``policy``; never beyond the index's boundary."""
    scope = CONTAINMENT_SCOPE_INDEX[finding.signal]
    if finding.risk < policy.risk.ignore_below:
        return Plan(
            outcome=PlanOutcome.SUPPRESSED,
            mode=None,
            reason=(
                f"risk {finding.risk:.2f} is below {policy.risk.ignore_below:.2f}: {finding.summary} "
                f"({'; '.join(finding.reasons)})"
            ),
        )
    mode = policy.mode_for(finding.risk)
    step = policy.step_for(scope.action) if scope.action else None
    if step is None or not finding.targets:
        why = (
            f"no action acts on {scope.boundary}; the next one available means {scope.broader}"
            if scope.action is None or not finding.targets
            else f"policy {policy.name} does not permit {scope.action}"
        )
        return Plan(
            outcome=PlanOutcome.ESCALATE,
            mode=mode,
            reason=f"risk {finding.risk:.2f} ({finding.summary}) but {why}",
            would_have_done=[f"refused: {scope.broader}"],
        )
    targets = [t for t in finding.targets if t.risk >= policy.risk.ignore_below]
    actions = [
        PlannedAction(
            type=step.type,
            target=t.target,
            params={**step.params, "target": t.ref},
            mode=mode,
            idempotency_key=f"{incident_key}:{step.type}:{t.target}",
        )
        for t in targets
    ]
    would = [f"{a.type} on {a.target} ({t.reason})" for a, t in zip(actions, targets, strict=True)]
    reason = f"risk {finding.risk:.2f}: {finding.summary}; contain {scope.boundary}"
    if mode in (Mode.OBSERVE, Mode.DRY_RUN):
        return Plan(
            outcome=PlanOutcome.DRY_RUN,
            mode=mode,
            reason=f"policy mode is {mode}; {reason}",
            would_have_done=would,
        )
    return Plan(outcome=PlanOutcome.ACT, mode=mode, reason=reason, actions=actions, would_have_done=would)

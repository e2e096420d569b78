"""Containment planning: a finding and its pinned policy become a plan, never beyond the index.

Pure code the security loop replays: the finding, the policy and the incident key
decide the plan, so a policy edit never reaches a run in flight.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from policies.detection import Finding
from policies.scope import CONTAINMENT_SCOPE_INDEX
from policies.security_policy import SecurityPolicy
from suture.models import Mode, PlannedAction


class ContainmentPlan(BaseModel):
    """What the loop will do about a finding, and why.

    ``outcome`` is ``act`` (``actions`` set), ``suppressed`` (too little risk),
    ``dry_run`` (the policy only observes) or ``escalate`` (no action fits the
    narrowest boundary).
    """

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["act", "suppressed", "dry_run", "escalate"]
    mode: Mode | None
    reason: str
    actions: list[PlannedAction] = []
    would_have_done: list[str] = []


def plan_containment(policy: SecurityPolicy, finding: Finding, incident_key: str) -> ContainmentPlan:
    """Turn a finding into a plan under ``policy``; never beyond the index's boundary."""
    scope = CONTAINMENT_SCOPE_INDEX[finding.signal]
    if finding.risk < policy.risk.ignore_below:
        return ContainmentPlan(
            outcome="suppressed",
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
        return ContainmentPlan(
            outcome="escalate",
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
        return ContainmentPlan(
            outcome="dry_run", mode=mode, reason=f"policy mode is {mode}; {reason}", would_have_done=would
        )
    return ContainmentPlan(outcome="act", mode=mode, reason=reason, actions=actions, would_have_done=would)

"""Score an incident against the known failure signatures of its policy.

A signature that needs a recent rollout matches when the Deployment's current
revision is younger than the signature's window: that is the correlation a human
makes first ("what changed?"). The best matching signature gives the confidence;
without one the policy's base confidence applies, which is normally below the
threshold so that novel incidents reach a human.
"""

from __future__ import annotations

from datetime import datetime

from policies.models import ReliabilityPolicy
from suture.models import Diagnosis, RolloutHistory


def diagnose(policy: ReliabilityPolicy, history: RolloutHistory | None, now: datetime) -> Diagnosis:
    changes = recent_changes(history, now)
    rollout_age = _current_rollout_age(history, now)
    matched = [
        signature
        for signature in policy.signatures
        if signature.recent_rollout_within is None
        or (rollout_age is not None and rollout_age <= signature.recent_rollout_within)
    ]
    if not matched:
        return Diagnosis(
            signature=None,
            confidence=policy.base_confidence,
            summary="no known signature matches",
            recent_changes=changes,
        )
    best = max(matched, key=lambda signature: signature.confidence)
    return Diagnosis(
        signature=best.name,
        confidence=best.confidence,
        summary=best.description or f"matches signature {best.name}",
        recent_changes=changes,
    )


def recent_changes(history: RolloutHistory | None, now: datetime) -> list[str]:
    if history is None:
        return []
    return [
        f"revision {rollout.revision} ({', '.join(rollout.images)}) "
        f"rolled out {_age_text((now - rollout.created_at).total_seconds())} ago"
        for rollout in history.rollouts[:3]
    ]


def _current_rollout_age(history: RolloutHistory | None, now: datetime) -> float | None:
    if history is None:
        return None
    for rollout in history.rollouts:
        if rollout.revision == history.current_revision:
            return (now - rollout.created_at).total_seconds()
    return None


def _age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"

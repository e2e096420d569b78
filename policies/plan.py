"""What a loop's decision step concludes, in one shape for every loop.

The reliability engine, the security containment planner and the resource
gates each answer the same question: act, only record what would have been
done, hand over to a human, or do nothing. The answer is a :class:`PlanOutcome`,
never the wording of the reason, so a loop branches on a type and the reason
stays free text for people.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from suture.models import Mode, PlannedAction


class PlanOutcome(StrEnum):
    """Where a decision leads."""

    ACT = "act"
    """Take ``actions`` (after approval when the mode is supervised)."""
    DRY_RUN = "dry_run"
    """The policy only observes: record ``would_have_done`` and stop."""
    ESCALATE = "escalate"
    """Something stops automation (confidence, scope, a gate): a human gets a briefing."""
    SUPPRESSED = "suppressed"
    """Nothing worth doing (too little risk, a benign change): recorded, no human needed."""


class Plan(BaseModel):
    """What the loop will do about one incident, and why."""

    model_config = ConfigDict(extra="forbid")

    outcome: PlanOutcome
    mode: Mode | None
    reason: str
    actions: list[PlannedAction] = []
    would_have_done: list[str] = []

    @property
    def act(self) -> bool:
        return self.outcome == PlanOutcome.ACT

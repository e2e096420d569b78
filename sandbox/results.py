"""Turn a finished run into the drill result the contract describes."""

from __future__ import annotations

from sandbox.drill import Drill, DrillAction, DrillResult
from suture.models import LoopResult, Mode, Outcome, Verdict


def drill_result(
    drill: Drill, run: LoopResult | None, checks: dict[str, bool], detail: str = ""
) -> DrillResult:
    """A drill passes when the run reached the expected outcome and every check held."""
    outcome = str(run.outcome) if run is not None else "no_action"
    resolved = run is not None and run.outcome == Outcome.RESOLVED
    timeline = run.timeline if run is not None else None
    mttr = None
    if resolved and timeline and timeline.detected and timeline.verified:
        mttr = round((timeline.verified - timeline.detected).total_seconds(), 2)
    return DrillResult(
        scenario=drill.name,
        loop=drill.loop,
        expected=drill.expected,
        outcome=outcome,  # type: ignore[arg-type]
        passed=outcome == drill.expected and all(checks.values()),
        workflow_id=run.workflow_id if run is not None else None,
        mttr_s=mttr,
        verified=run is not None and run.verdict == Verdict.HEALTHY,
        escalated=run is not None and run.outcome == Outcome.ESCALATED,
        human_touched=run is not None and run.human_touched,
        actions=[
            DrillAction(
                type=action.type,
                target=action.target,
                mode=action.mode if action.mode != Mode.OBSERVE else Mode.DRY_RUN,  # type: ignore[arg-type]
                compensated=action.compensated,
            )
            for action in (run.actions if run is not None else [])
        ],
        checks=checks,
        detail=detail or (run.reason if run is not None else ""),
    )

"""The morning report shows the money the resource loop saved, and what it only recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from suture.models import ActionRecord, Loop, LoopResult, Mode, Outcome, Timeline
from suture.report import render_text, summarize

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def run(name: str, outcome: Outcome, savings: float | None, compensated: bool = False) -> LoopResult:
    actions = [
        ActionRecord(
            type="ec2.stop_instances",
            target=f"123456789012/{name}",
            mode=Mode.AUTONOMOUS,
            compensated=compensated,
            savings_usd_month=savings,
        )
    ]
    return LoopResult(
        workflow_id=f"resource-{name}",
        loop=Loop.RESOURCE,
        subject=f"123456789012/{name}",
        outcome=outcome,
        reason="test",
        actions=actions if outcome != Outcome.DRY_RUN else [],
        timeline=Timeline(detected=NOW - timedelta(hours=2), closed=NOW - timedelta(hours=1)),
    )


def test_money_saved_counts_only_verified_actions_that_were_not_undone() -> None:
    runs = [
        run("i-kept", Outcome.RESOLVED, 2233.8),
        run("i-undone", Outcome.ESCALATED, 2233.8, compensated=True),
        run("i-capped", Outcome.DRY_RUN, None),
    ]
    report = summarize(runs, NOW - timedelta(days=1), NOW)
    assert report.saved_usd_month == 2233.8
    assert report.resource_dry_runs == 1
    assert "$2,233.80" in render_text(report)

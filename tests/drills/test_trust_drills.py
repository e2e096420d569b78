"""The earned-trust drills end to end, and a backtest of the history they leave behind.

They run concurrently on the session's stack, each on its own service of the
``trust`` namespace under a policy of its own, once per session; each test checks
one row of the issue's table.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from sandbox.drill import DrillResult
from sandbox.runner import all_drills, run_on
from sandbox.stack import SANDBOX_POLICIES, Stack
from sandbox.trust_drills import TRUST_DRILLS
from tests.drills.conftest import record_histories
from workers.whatif_cli import backtest

pytestmark = [pytest.mark.drill, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def trust(stack: Stack) -> dict[str, DrillResult]:
    drills = [drill for name, drill in all_drills().items() if name in TRUST_DRILLS]
    report = await run_on(stack, drills, lambda _message: None)
    await record_histories(stack, {result.scenario: result.workflow_id for result in report.drills})
    return {result.scenario: result for result in report.drills}


def outcome(results: dict[str, DrillResult], name: str) -> DrillResult:
    result = results[name]
    assert result.passed, json.dumps(result.model_dump(mode="json"), indent=1)
    return result


async def test_supervised_successes_earn_a_promotion_and_the_promoted_class_acts_alone(
    trust: dict[str, DrillResult],
) -> None:
    result = outcome(trust, "earned-promotion")
    assert result.checks["promotions recommends the rollback after them"]
    assert result.outcome == "resolved" and result.verified and not result.human_touched
    assert [(a.type, a.mode) for a in result.actions] == [("k8s.rollback", "autonomous")]


async def test_an_undone_autonomous_action_demotes_its_class_and_the_next_alert_waits(
    trust: dict[str, DrillResult],
) -> None:
    result = outcome(trust, "demotion-on-undo")
    assert result.checks["the class is demoted to supervised by suture"]
    assert result.checks["the next identical alert waited for approval"]
    assert result.outcome == "rejected" and result.actions == []


async def test_a_novel_signature_escalates_under_autonomy_with_the_nearest_incidents(
    trust: dict[str, DrillResult],
) -> None:
    result = outcome(trust, "novel-signature-under-autonomy")
    assert result.outcome == "escalated" and result.actions == []
    assert result.checks["the briefing lists the nearest past incidents"]


async def test_a_dry_run_on_a_fault_that_clears_itself_scores_acting_as_not_helpful(
    trust: dict[str, DrillResult],
) -> None:
    result = outcome(trust, "shadow-score")
    assert result.outcome == "dry_run" and result.actions == []
    assert result.checks["the shadow score is 'acting would not have helped'"]


async def test_an_exempted_target_escalates_and_acts_again_once_the_exception_expired(
    trust: dict[str, DrillResult],
) -> None:
    result = outcome(trust, "expired-exception")
    assert result.checks["the exempted target escalated without action"]
    assert [(a.type, a.mode) for a in result.actions] == [("k8s.rollback", "autonomous")]


async def test_a_backtest_of_the_drills_history_shows_the_shadowed_policy_would_act_if_autonomous(
    stack: Stack, trust: dict[str, DrillResult], tmp_path: Path
) -> None:
    outcome(trust, "shadow-score")
    original = (SANDBOX_POLICIES / "earned-trust.yaml").read_text(encoding="utf-8")
    changed = tmp_path / "earned-trust.yaml"
    changed.write_text(original.replace("mode: dry_run", "mode: autonomous"), encoding="utf-8")

    found = backtest(stack.store, stack.policy_dirs, changed, datetime.now(UTC) - timedelta(hours=1))

    rows = {row["policy"]: row for row in found["policies"]}
    assert rows["trust-shadow"]["more actions"] == 1
    assert rows["trust-earned-promotion"]["runs"] >= 3
    assert rows["trust-earned-promotion"]["same"] == rows["trust-earned-promotion"]["runs"]
    shadowed = [row for row in found["changes"] if row["workflow_id"] == trust["shadow-score"].workflow_id]
    assert [row["after"] for row in shadowed] == [
        "trust-shadow: act (autonomous): k8s.rollback on trust/shadowed"
    ]

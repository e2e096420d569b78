"""The security drills end to end: moto over loopback, CloudTrail events through the ingress.

They run concurrently on the session's stack (each on its own slice of the AWS
estate); each test then checks one drill against the issue's expectations.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio

from sandbox.drill import DrillResult
from sandbox.runner import all_drills, run_on
from sandbox.stack import Stack
from suture.errors import SutureError
from suture.models import LoopResult, Outcome
from tests.drills.conftest import record_histories
from workers.approvals import order_undo

pytestmark = [pytest.mark.drill, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def security(stack: Stack) -> dict[str, DrillResult]:
    drills = [drill for drill in all_drills().values() if drill.loop == "security"]
    report = await run_on(stack, drills, lambda _message: None)
    await record_histories(stack, {result.scenario: result.workflow_id for result in report.drills})
    return {result.scenario: result for result in report.drills}


def outcome(results: dict[str, DrillResult], name: str) -> DrillResult:
    result = results[name]
    assert result.passed, json.dumps(result.model_dump(mode="json"), indent=1)
    return result


async def test_a_leaked_key_is_disabled_alone_and_verified(security: dict[str, DrillResult]) -> None:
    result = outcome(security, "leaked-access-key")
    assert result.outcome == "resolved" and result.verified and not result.human_touched
    assert [(a.type, a.mode) for a in result.actions] == [("iam.deactivate_access_key", "autonomous")]
    assert result.checks["the user's other key stays Active"]
    assert result.checks["the shared role is untouched"]


async def test_ssh_open_to_the_world_loses_that_rule_only(security: dict[str, DrillResult]) -> None:
    result = outcome(security, "open-ssh-ingress")
    assert result.outcome == "resolved" and result.verified
    assert [a.type for a in result.actions] == ["ec2.revoke_ingress"]
    assert result.checks["the group's other rules remain"]


async def test_a_shared_role_is_escalated_with_its_dependents(security: dict[str, DrillResult]) -> None:
    result = outcome(security, "shared-credential-anomaly")
    assert result.outcome == "escalated" and result.escalated and result.actions == []
    assert result.checks["the briefing lists every dependent"]


async def test_a_public_bucket_gets_its_block_back(security: dict[str, DrillResult]) -> None:
    result = outcome(security, "public-bucket")
    assert result.outcome == "resolved" and result.verified
    assert [a.type for a in result.actions] == ["s3.restore_public_access_block"]


async def test_a_private_range_rule_is_suppressed_without_action(security: dict[str, DrillResult]) -> None:
    result = outcome(security, "benign-change")
    assert result.outcome == "suppressed" and result.actions == [] and not result.escalated


async def test_a_human_can_order_the_undo_of_a_contained_key(
    stack: Stack, security: dict[str, DrillResult]
) -> None:
    contained = outcome(security, "leaked-access-key")
    assert contained.workflow_id is not None
    _account, user, key = contained.actions[0].target.split("/")

    with pytest.raises(SutureError, match=r"'mallory' may not undo .* lists secops-alice, secops-bob"):
        await order_undo(stack.client, contained.workflow_id, "mallory", "I say so")
    assert await asyncio.to_thread(stack.aws.key_status, user, key) == "Inactive"

    undo_id = await order_undo(
        stack.client, contained.workflow_id, "secops-alice", "the key belonged to a pentest"
    )
    undone = await asyncio.wait_for(
        stack.client.get_workflow_handle(undo_id, result_type=LoopResult).result(), 60
    )

    assert undone.outcome == Outcome.ROLLED_BACK
    assert undone.approver == "secops-alice"
    assert await asyncio.to_thread(stack.aws.key_status, user, key) == "Active"
    with pytest.raises(SutureError, match="already ordered"):
        await order_undo(stack.client, contained.workflow_id, "secops-alice", "again")

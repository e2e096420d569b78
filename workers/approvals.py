"""What a human does to a run: list what waits, approve, reject, order an undo.

The same signals work from the Temporal CLI (``temporal workflow signal --name
approve``); these helpers add the checks a person wants before sending one: the
run exists, it is waiting, the name is one the policy lists. The workflow checks
the approver again and audits anyone it ignores, so a raw signal is just as safe.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError

from policies.loading import load_policies
from suture import search_attributes as sa
from suture.errors import SutureError
from suture.models import ApprovalDecision, LoopResult, LoopStatus, UndoRequest
from workflows.undo import UndoRun, undo_workflow_id


@dataclass(frozen=True)
class PendingRun:
    workflow_id: str
    loop: str
    service: str
    policy: str | None
    started: str


async def pending_runs(client: Client) -> list[PendingRun]:
    """Runs waiting for a human, newest first."""
    query = f"{sa.SUTURE_OUTCOME.name} = '{sa.PENDING_APPROVAL}' AND ExecutionStatus = 'Running'"
    runs = []
    async for execution in client.list_workflows(query):
        attributes = execution.typed_search_attributes
        runs.append(
            PendingRun(
                workflow_id=execution.id,
                loop=attributes.get(sa.SUTURE_LOOP) or "",
                service=attributes.get(sa.SUTURE_SERVICE) or "",
                policy=None,
                started=execution.start_time.isoformat(timespec="seconds"),
            )
        )
    return runs


async def decide(client: Client, workflow_id: str, verb: str, decision: ApprovalDecision) -> LoopStatus:
    """Send ``approve`` or ``reject`` to a waiting run.

    Raises:
        SutureError: when the run does not exist, is not waiting, or the name is not an approver.
    """
    handle = client.get_workflow_handle(workflow_id)
    try:
        status: LoopStatus = await handle.query("status", result_type=LoopStatus)
    except RPCError as error:
        raise SutureError(f"no run {workflow_id!r} to {verb}: {error.message}") from None
    if not status.pending_approval:
        raise SutureError(f"run {workflow_id} is not waiting for approval (it is at step {status.step!r})")
    if decision.approver not in status.approvers:
        raise SutureError(
            f"{decision.approver!r} is not an approver of run {workflow_id} "
            f"(its policy {status.policy!r} lists {', '.join(status.approvers)})"
        )
    await handle.signal(verb, decision)
    return status


async def order_undo(
    client: Client, workflow_id: str, requested_by: str, note: str, policy_dirs: list
) -> str:
    """Start the undo of a finished run's remaining actions; returns the undo run's ID.

    Raises:
        SutureError: when the run is not finished, has nothing to undo, or the
            person is not an approver of the policy the run used.
    """
    handle = client.get_workflow_handle(workflow_id, result_type=LoopResult)
    try:
        description = await handle.describe()
    except RPCError as error:
        raise SutureError(f"no run {workflow_id!r}: {error.message}") from None
    if description.status != WorkflowExecutionStatus.COMPLETED:
        state = description.status.name if description.status else "unknown"
        raise SutureError(f"run {workflow_id} has not completed (status {state})")
    result = await handle.result()
    if not result.undo:
        raise SutureError(f"run {workflow_id} left nothing to undo (outcome {result.outcome})")
    _check_may_undo(result, requested_by, policy_dirs)
    undo_id = undo_workflow_id(workflow_id)
    await client.start_workflow(
        UndoRun.run,
        UndoRequest(
            run_workflow_id=workflow_id,
            loop=result.loop,
            subject=result.subject,
            requested_by=requested_by,
            note=note,
            undo=result.undo,
        ),
        id=undo_id,
        task_queue=description.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    return undo_id


def _check_may_undo(result: LoopResult, person: str, policy_dirs: list) -> None:
    policies = {policy.name: policy for policy in load_policies(policy_dirs)}
    policy = policies.get(result.policy or "")
    approvers = policy.approval.approvers if policy and policy.approval else []
    if person not in approvers:
        raise SutureError(
            f"{person!r} may not undo run {result.workflow_id}: policy {result.policy!r} lists "
            f"approvers {approvers or 'none'}"
        )

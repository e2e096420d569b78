"""What a human does to a run: list what waits, approve, reject, order an undo.

Approvals go through each run's ``decide`` update, so the caller hears at once
whether the run took the answer or why it refused it; the decision is the
run's, made against the policy it pinned. The raw ``approve``/``reject`` signals
still work from the Temporal CLI and are checked the same way inside the run,
which audits whatever it ignores. An undo is decided inside ``UndoRun``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from suture import search_attributes as sa
from suture.errors import SutureError
from suture.models import (
    ApprovalAnswer,
    ApprovalDecision,
    ApprovalReceipt,
    ApprovalRequest,
    LoopStatus,
    UndoReceipt,
    UndoRequest,
)
from workflows.undo import UndoRun, undo_workflow_id


@dataclass(frozen=True)
class PendingRun:
    """A run waiting for a human, as the run itself reports it (its ``status`` query)."""

    workflow_id: str
    loop: str
    service: str
    policy: str | None
    started: str
    proposed_actions: list[str] = field(default_factory=list)
    approvers: list[str] = field(default_factory=list)
    tier: int | None = None
    tiers: int | None = None
    deadline: str | None = None
    step: str = ""


async def pending_runs(client: Client) -> list[PendingRun]:
    """Runs waiting for a human, newest first, each described by its own ``status`` query.

    Who may answer and until when come from the run (the policy it pinned), never
    from local policy files. A run that does not answer the query is still listed.
    """
    query = f"{sa.SUTURE_OUTCOME.name} = '{sa.PENDING_APPROVAL}' AND ExecutionStatus = 'Running'"
    runs = []
    async for execution in client.list_workflows(query):
        attributes = execution.typed_search_attributes
        status = await _status(client, execution.id)
        runs.append(
            PendingRun(
                workflow_id=execution.id,
                loop=attributes.get(sa.SUTURE_LOOP) or "",
                service=attributes.get(sa.SUTURE_SERVICE) or "",
                policy=status.policy if status else None,
                started=execution.start_time.isoformat(timespec="seconds"),
                proposed_actions=status.proposed_actions if status else [],
                approvers=status.approvers if status else [],
                tier=status.tier if status else None,
                tiers=status.tiers if status else None,
                deadline=status.deadline.isoformat(timespec="seconds")
                if status and status.deadline
                else None,
                step=status.step if status else "",
            )
        )
    return runs


async def _status(client: Client, workflow_id: str) -> LoopStatus | None:
    try:
        return await client.get_workflow_handle(workflow_id).query("status", result_type=LoopStatus)
    except (RPCError, WorkflowQueryFailedError):
        return None


async def decide(client: Client, workflow_id: str, answer: ApprovalAnswer, decision: ApprovalDecision) -> str:
    """Approve or reject a waiting run through its ``decide`` update; returns the run's policy.

    The run itself checks, against the policy it pinned when it started, that it is
    waiting and that the name is one of its approvers, and refuses otherwise.

    Raises:
        SutureError: the run does not exist or is closed, or it refused the answer (with its reason).
    """
    handle = client.get_workflow_handle(workflow_id)
    request = ApprovalRequest(answer=answer, approver=decision.approver, note=decision.note)
    try:
        receipt = await handle.execute_update("decide", request, result_type=ApprovalReceipt)
    except WorkflowUpdateFailedError as error:
        raise SutureError(f"run {workflow_id} refused: {_message(error)}") from None
    except RPCError as error:
        raise SutureError(f"cannot {answer} run {workflow_id}: {error.message}") from None
    return receipt.policy or ""


async def order_undo(client: Client, workflow_id: str, requested_by: str, note: str) -> str:
    """Start the undo of a finished run and wait until the run's authority is checked.

    Returns the undo run's ID. Authority is decided inside Temporal by ``UndoRun``
    from the finished run's own result, never from local policy files.

    Raises:
        SutureError: the undo was refused (with the reason), or has already been ordered.
    """
    undo_id = undo_workflow_id(workflow_id)
    request = UndoRequest(run_workflow_id=workflow_id, requested_by=requested_by, note=note)
    finished = await _finished(client, workflow_id)
    attributes = finished.typed_search_attributes
    try:
        handle = await client.start_workflow(
            UndoRun.run,
            request,
            id=undo_id,
            task_queue=finished.task_queue,
            # A refused attempt fails; it must not stand in the way of an authorised one.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            # Filterable beside the run it undoes: same loop and service in the Temporal UI.
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.SUTURE_LOOP, attributes.get(sa.SUTURE_LOOP) or "undo"),
                    SearchAttributePair(sa.SUTURE_SERVICE, attributes.get(sa.SUTURE_SERVICE) or ""),
                    SearchAttributePair(sa.SUTURE_MODE, "undo"),
                ]
            ),
            static_summary=f"undo of {workflow_id} ordered by {requested_by}"[:400],
            static_details=(
                f"**UndoRun**: runs the compensations that `{workflow_id}` left in place, "
                f"if its pinned policy lets {requested_by} order it  \nnote: {note[:500] or '-'}"
            ),
        )
    except WorkflowAlreadyStartedError:
        raise SutureError(await _already_ordered(client, undo_id, workflow_id)) from None
    try:
        await handle.execute_update("authorisation", result_type=UndoReceipt)
    except WorkflowUpdateFailedError as error:
        raise SutureError(_message(error)) from None
    return undo_id


async def _finished(client: Client, workflow_id: str) -> WorkflowExecutionDescription:
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        raise SutureError(f"no run {workflow_id!r}: {error.message}") from None
    if description.status != WorkflowExecutionStatus.COMPLETED:
        state = description.status.name if description.status else "unknown"
        raise SutureError(f"run {workflow_id} has not completed (status {state}); nothing to undo yet")
    return description


async def _already_ordered(client: Client, undo_id: str, workflow_id: str) -> str:
    description = await client.get_workflow_handle(undo_id).describe()
    state = description.status.name.lower() if description.status else "open"
    return f"the undo of {workflow_id} was already ordered ({undo_id}, {state}); it undoes once"


def _message(error: WorkflowUpdateFailedError) -> str:
    cause: Any = error.cause
    while getattr(cause, "cause", None) is not None and not getattr(cause, "message", ""):
        cause = cause.cause
    return getattr(cause, "message", "") or str(cause or error)

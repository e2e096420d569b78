"""Finished runs as Temporal keeps them: the authority for undoing one.

An undo must not trust its caller for what to undo or for who may order it: the
caller could be anyone who can start a workflow. So ``UndoRun`` reads the
finished run's own result from Temporal, whose history suture's database cannot
rewrite, and decides from it: the compensations the run left, and the approvers
of the policy the run pinned when it started.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from suture.errors import TargetNotFound
from suture.models import FinishedRun, LoopResult, RunRef

LOOP_WORKFLOWS = frozenset({"ReliabilityLoop", "SecurityLoop", "ResourceLoop"})
"""Workflow types whose results may be undone."""


class RunRecords:
    """Reads runs through the worker's own Temporal client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="runs.finished_run")
    async def finished_run(self, ref: RunRef) -> FinishedRun:
        """The run's type and status, with its result when it completed.

        Raises:
            ApplicationError: ``TargetNotFound`` (not retried) when no such run exists.
        """
        handle = self.client.get_workflow_handle(ref.workflow_id, result_type=LoopResult)
        try:
            description = await handle.describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise TargetNotFound.failure(f"no run {ref.workflow_id!r}") from error
            raise
        status = description.status.name.lower() if description.status else "unknown"
        found = FinishedRun(
            workflow_id=ref.workflow_id, workflow_type=description.workflow_type, status=status
        )
        if (
            description.workflow_type in LOOP_WORKFLOWS
            and description.status == WorkflowExecutionStatus.COMPLETED
        ):
            found.result = await handle.result()
        return found

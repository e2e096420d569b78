"""A human-ordered undo of a finished run.

A resolved run keeps its compensations in its result (``LoopResult.undo``). When a
person decides the change must go (``suture undo RUN --as NAME``), this workflow
runs them newest first under a workflow ID derived from the original run, so
ordering the undo twice undoes once. Authorisation happens before it starts.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.loop import ACTION, RemediationLoop

with workflow.unsafe.imports_passed_through():
    from policies.registry import action_spec
    from suture.models import ActionOutcome, ActionRecord, LoopResult, Outcome, UndoRequest


def undo_workflow_id(run_workflow_id: str) -> str:
    return f"undo-{run_workflow_id}"


@workflow.defn(name="UndoRun")
class UndoRun(RemediationLoop):
    @workflow.run
    async def run(self, request: UndoRequest) -> LoopResult:
        self.loop, self.subject = request.loop, request.subject
        self.human_touched, self.approver = True, request.requested_by
        self.timeline.detected = workflow.now()
        await self.audit(
            "undo_ordered",
            f"undo of {request.run_workflow_id}: {request.note or 'no note'}",
            actor=request.requested_by,
        )
        for snapshot in reversed(request.undo):
            spec = action_spec(snapshot.action.type)
            outcome = await self.call(spec.undo, snapshot, ActionOutcome, ACTION)
            self.actions.append(
                ActionRecord(
                    type=snapshot.action.type,
                    target=str(snapshot.action.target),
                    mode=snapshot.action.mode,
                    compensated=True,
                    detail=outcome.detail,
                    started_at=workflow.now(),
                )
            )
            await self.audit(
                "compensated",
                f"undid {spec.name} on {snapshot.action.target}: {outcome.detail}",
                actor=request.requested_by,
            )
        self.timeline.acted = self.timeline.verified = workflow.now()
        return await self.finish(Outcome.ROLLED_BACK, f"undone at the request of {request.requested_by}")

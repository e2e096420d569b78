"""A human-ordered undo of a finished run, decided inside Temporal.

A resolved run keeps its compensations in its result (``LoopResult.undo``) and
the approvers of the policy it pinned (``LoopResult.undo_approvers``). When a
person orders the undo (``suture undo RUN --as NAME``, or this workflow started
by hand with the Temporal CLI), the request names only the run and the person.
This workflow reads the finished run from Temporal and refuses, failing with
``NotAuthorised``, anyone that run's pinned policy does not list; a caller's own
policy files play no part. The ``authorisation`` update answers the caller as
soon as that check is made. It runs under a workflow ID derived from the
original run, so ordering the undo twice undoes once, while a refused attempt
does not stand in the way of an authorised one.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.loop import ACTION, RemediationLoop

with workflow.unsafe.imports_passed_through():
    from policies.registry import action_spec
    from suture.errors import NotAuthorised
    from suture.models import (
        ActionOutcome,
        ActionRecord,
        FinishedRun,
        Loop,
        LoopResult,
        Outcome,
        RunRef,
        UndoReceipt,
        UndoRequest,
    )


def undo_workflow_id(run_workflow_id: str) -> str:
    return f"undo-{run_workflow_id}"


@workflow.defn(name="UndoRun")
class UndoRun(RemediationLoop):
    @workflow.init
    def __init__(self, request: UndoRequest) -> None:
        super().__init__()
        self.loop = Loop.RELIABILITY
        self.request = request
        self.refusal: str | None = None
        self.receipt: UndoReceipt | None = None

    @workflow.update(name="authorisation")
    async def authorisation(self) -> UndoReceipt:
        """Wait until the run's authority is checked: the receipt, or the refusal as an error."""
        await workflow.wait_condition(lambda: self.receipt is not None or self.refusal is not None)
        if self.receipt is None:
            raise NotAuthorised.failure(self.refusal or "refused")
        return self.receipt

    @workflow.run
    async def run(self, request: UndoRequest) -> LoopResult:
        self.human_touched, self.approver = True, request.requested_by
        self.timeline.detected = workflow.now()
        found = await self.call("runs.finished_run", RunRef(workflow_id=request.run_workflow_id), FinishedRun)
        original = found.result
        if original is not None:
            self.loop, self.subject = original.loop, original.subject
            self.policy_name, self.policy_version = original.policy, original.policy_version
        refusal = _refusal(found, request.requested_by)
        if refusal is not None or original is None:
            return await self._refuse(refusal or "the run left nothing to undo")
        self.receipt = UndoReceipt(
            workflow_id=workflow.info().workflow_id,
            run_workflow_id=request.run_workflow_id,
            requested_by=request.requested_by,
            actions=[f"{s.action.type} on {s.action.target}" for s in original.undo],
        )
        await self.audit(
            "undo_ordered",
            f"undo of {request.run_workflow_id}: {request.note or 'no note'}",
            actor=request.requested_by,
        )
        for snapshot in reversed(original.undo):
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
        await workflow.wait_condition(workflow.all_handlers_finished)
        return await self.finish(Outcome.ROLLED_BACK, f"undone at the request of {request.requested_by}")

    async def _refuse(self, reason: str) -> LoopResult:
        self.refusal = f"{self.request.requested_by!r} may not undo {self.request.run_workflow_id}: {reason}"
        await self.audit("undo_refused", self.refusal, actor=self.request.requested_by)
        await workflow.wait_condition(workflow.all_handlers_finished)
        raise NotAuthorised.failure(self.refusal)


def _refusal(found: FinishedRun, person: str) -> str | None:
    """Why ``person`` may not undo the run, judged from the run itself; None when they may."""
    if found.result is None:
        kind = found.workflow_type or "workflow"
        return f"it is a {kind} run that is {found.status}, not a completed loop run"
    result = found.result
    if not result.undo:
        return f"it left nothing to undo (outcome {result.outcome})"
    if not result.undo_approvers:
        return f"its policy {result.policy!r} lists no approvers, so nobody may undo it"
    if person not in result.undo_approvers:
        return f"its policy {result.policy!r} lists {', '.join(result.undo_approvers)}"
    return None

"""The inputs closed runs received, read back from the audit trail for ``suture policy backtest``.

Each reliability and security run keeps the alert or event it was started with in
its ``detected`` audit entry (:func:`policies.whatif.input_evidence`). The audit
trail is the durable place for it: it is kept as long as the audit itself, covered
by the keyed hash chain, and shared by every worker, whereas a workflow's history
in Temporal is dropped after the namespace's retention (days). The run's
``assessed`` entry adds what it learned about the Deployment (the kind of recent
change), which the backtest uses instead of a blind guess at the rollout history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from policies.trust import ASSESSED, TRUST_EVIDENCE, AssessedIncident
from policies.whatif import input_of
from suture.models import AlertNotice, AwsEvent, Evidence, LoopResult
from suture.store import AuditStore
from suture.tables import AuditEvent


@dataclass(frozen=True)
class RecordedInput:
    """One closed run and the input it was started with (None when it predates keeping inputs)."""

    run: LoopResult
    given: AlertNotice | AwsEvent | None
    change: str | None = None
    """The kind of recent change its trust assessment saw (``rollout``, ``none``, ``unknown``)."""


def recorded_inputs(store: AuditStore, since: datetime) -> list[RecordedInput]:
    """Every run that closed since ``since``, oldest first, with its recorded input."""
    runs = [run for run in store.runs(since=since) if run.workflow_id and run.loop != "resource"]
    wanted = {run.workflow_id for run in runs}
    inputs: dict[str, AlertNotice | AwsEvent] = {}
    changes: dict[str, str] = {}
    query = select(AuditEvent).where(AuditEvent.step.in_(("detected", ASSESSED)))
    with store._reads() as session:
        for row in session.scalars(query.order_by(AuditEvent.id)):
            if row.workflow_id not in wanted:
                continue
            for item in row.evidence:
                if row.step == ASSESSED and item.get("source") == TRUST_EVIDENCE:
                    incident = AssessedIncident.model_validate_json(str(item.get("value")))
                    changes.setdefault(row.workflow_id, incident.signature.change)
                elif row.step == "detected":
                    given = input_of(Evidence.model_validate(item))
                    if given is not None:
                        inputs.setdefault(row.workflow_id, given)
    return [RecordedInput(run, inputs.get(run.workflow_id), changes.get(run.workflow_id)) for run in runs]

"""Earned trust in the audit store: derive track records from audited facts, keep overrides and exceptions.

Every count in ``trust_records`` and every row of ``incident_signatures`` follows
from facts already in the keyed chain or the sealed runs table: a run's
``assessed`` entry (its signature and planned actions), how the run closed, its
``shadow`` entry, an ``UndoRun`` of it, and people's ``feedback`` entries. The same
:func:`policies.trust.fold` is applied when a run closes (:func:`record_closed_run`)
and when everything is recomputed (:func:`rebuild`), so both agree.

Promotions, demotions and exceptions are decisions, not derived data: each is
written together with its governance audit event, in one transaction. A demotion
is suture's own decision, taken when an autonomous action of a policy is undone,
fails verification or is judged wrong; a promotion only ever comes from a person.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from policies.trust import (
    ASSESSED,
    FEEDBACK,
    SHADOW,
    TRUST_EVIDENCE,
    AssessedIncident,
    ClassStanding,
    Demotion,
    Feedback,
    IncidentSignature,
    PastIncident,
    RunFact,
    ShadowScore,
    TrackRecord,
    TrustAssessment,
    TrustQuery,
    demotion_due,
    fold,
)
from suture.chain_writer import GOVERNANCE, _next_seq
from suture.models import AuditEntry, Evidence, Loop, LoopResult, Mode, Outcome
from suture.store import AuditStore
from suture.tables import AuditEvent, Run, result_of
from suture.trust_tables import IncidentSignatureRow, TrackRecordRow, TrustExceptionRow, TrustOverrideRow

UNDO_PREFIX = "undo-"
NEAREST = 3


class TrustException(NamedTuple):
    id: int
    target: str
    by: str
    reason: str
    until: datetime
    active: bool


class Override(NamedTuple):
    policy: str
    action: str
    mode: str
    by: str
    reason: str
    at: datetime


# --- facts from the trail -----------------------------------------------------------------


def _assessed_of(session: Session, workflow_id: str) -> AssessedIncident | None:
    query = select(AuditEvent).where(AuditEvent.workflow_id == workflow_id, AuditEvent.step == ASSESSED)
    for row in session.scalars(query.order_by(AuditEvent.id)):
        found = _trust_value(row.evidence, ASSESSED)
        if found is not None:
            return AssessedIncident.model_validate_json(found)
    return None


def _shadow_of(session: Session, workflow_id: str) -> ShadowScore | None:
    query = select(AuditEvent).where(AuditEvent.workflow_id == workflow_id, AuditEvent.step == SHADOW)
    for row in session.scalars(query):
        found = _trust_value(row.evidence, SHADOW)
        if found is not None:
            return ShadowScore(found)
    return None


def _trust_value(evidence: list[dict[str, object]], query: str) -> str | None:
    for item in evidence:
        if item.get("source") == TRUST_EVIDENCE and item.get("query") == query:
            return str(item.get("value"))
    return None


def outcome_fact(result: LoopResult, assessed: AssessedIncident) -> RunFact:
    timeline = result.timeline
    verify_s = None
    if result.outcome == Outcome.RESOLVED and timeline.acted and timeline.verified:
        verify_s = (timeline.verified - timeline.acted).total_seconds()
    return RunFact(
        workflow_id=result.workflow_id,
        policy=assessed.policy,
        actions=assessed.actions,
        signature=assessed.signature.key(),
        outcome=result.outcome,
        mode=result.mode,
        verdict=result.verdict,
        compensated=any(action.compensated for action in result.actions),
        verify_s=verify_s,
        at=timeline.closed,
    )


def _resolution(result: LoopResult) -> str:
    actions = ", ".join(f"{a.type} on {a.target}" for a in result.actions) or "no action"
    if result.outcome == Outcome.RESOLVED:
        who = f", approved by {result.approver}" if result.approver else ""
        return f"resolved by {actions} ({result.mode}{who})"
    if result.outcome == Outcome.REJECTED:
        return f"rejected by {result.approver or 'a person'}"
    return f"{result.outcome}: {result.reason[:160]}"


# --- incremental ----------------------------------------------------------------------------


def record_closed_run(store: AuditStore, result: LoopResult) -> list[str]:
    """Count a closed run in the track record (once); returns the demotions it caused."""

    def count(session: Session) -> list[str]:
        if result.workflow_id.startswith(UNDO_PREFIX) and result.outcome == Outcome.ROLLED_BACK:
            return _count_undo(store, session, result)
        if session.get(IncidentSignatureRow, result.workflow_id) is not None:
            return []
        assessed = _assessed_of(session, result.workflow_id)
        if assessed is None:
            return []
        _add_incident(session, result, assessed)
        fact = outcome_fact(result, assessed)
        _fold(session, fact)
        shadow = _shadow_of(session, result.workflow_id)
        if shadow is not None:
            _fold(session, fact.model_copy(update={"shadow": shadow, "outcome": None}))
        return _demote_if_due(store, session, fact, assessed, "its verification failed and it was undone")

    return store._write(count)


def _count_undo(store: AuditStore, session: Session, undo: LoopResult) -> list[str]:
    original = undo.workflow_id[len(UNDO_PREFIX) :]
    row = session.get(Run, original)
    assessed = _assessed_of(session, original)
    if row is None or assessed is None or session.get(IncidentSignatureRow, undo.workflow_id) is not None:
        return []
    _add_incident(session, undo, assessed)  # also what makes a retried close count once
    by = undo.approver
    fact = outcome_fact(result_of(row), assessed).model_copy(update={"undone": True})
    _fold(session, fact)
    return _demote_if_due(store, session, fact, assessed, f"{by or 'a person'} ordered it undone")


def record_feedback(
    store: AuditStore, workflow_id: str, by: str, verdict: Feedback, note: str = ""
) -> list[str]:
    """Audit a person's feedback on a run and count it; returns the demotions it caused.

    Raises:
        ValueError: no run ``workflow_id`` is recorded.
    """

    def give(session: Session) -> list[str]:
        row = session.get(Run, workflow_id)
        if row is None:
            raise ValueError(f"no run {workflow_id!r} is recorded in the audit store")
        evidence = Evidence(
            source="suture.feedback", query=workflow_id, value=str(verdict), at=store._clock()
        )
        detail = f"{by} judged {workflow_id} {verdict}" + (f": {note}" if note else "")
        _governance(store, session, Loop(row.loop), f"run {workflow_id}", FEEDBACK, detail, by, [evidence])
        assessed = _assessed_of(session, workflow_id)
        if assessed is None:
            return []
        fact = outcome_fact(result_of(row), assessed).model_copy(update={"feedback": verdict})
        _fold(session, fact)
        return _demote_if_due(store, session, fact, assessed, f"{by} judged it wrong")

    return store._write(give)


def _fold(session: Session, fact: RunFact) -> None:
    for action in fact.actions:
        key = (fact.policy, action, fact.signature)
        row = session.get(TrackRecordRow, key, with_for_update=True)
        if row is None:
            record = TrackRecord(policy=fact.policy, action=action, signature=fact.signature)
            row = TrackRecordRow(policy=fact.policy, action=action, signature=fact.signature)
            session.add(row)
        else:
            record = TrackRecord.model_validate(row.record)
        row.record = fold(record, fact).model_dump(mode="json")


def _add_incident(session: Session, result: LoopResult, assessed: AssessedIncident) -> None:
    signature = assessed.signature
    session.add(
        IncidentSignatureRow(
            workflow_id=result.workflow_id,
            loop=str(signature.loop),
            policy=assessed.policy,
            alert=signature.alert,
            service=signature.service,
            change=signature.change,
            diagnosis=signature.diagnosis,
            signature=signature.key(),
            actions=assessed.actions,
            outcome=str(result.outcome),
            resolution=_resolution(result),
            at=result.timeline.closed or result.timeline.detected,
        )
    )


def _demote_if_due(
    store: AuditStore, session: Session, fact: RunFact, assessed: AssessedIncident, why: str
) -> list[str]:
    if not demotion_due(fact) or assessed.demotion == Demotion.OFF:
        return []
    reason = f"an autonomous run ({fact.workflow_id}) {why}"
    demoted = []
    for action in fact.actions:
        _set_override(
            store, session, assessed.signature.loop, fact.policy, action, Mode.SUPERVISED, "suture", reason
        )
        demoted.append(f"{fact.policy} {action}")
    return demoted


# --- rebuild --------------------------------------------------------------------------------


def rebuild(store: AuditStore) -> int:
    """Recompute ``trust_records`` and ``incident_signatures`` from the trail; returns the records written."""

    def recompute(session: Session) -> int:
        session.execute(delete(TrackRecordRow))
        session.execute(delete(IncidentSignatureRow))
        for fact in _facts(session):
            _fold(session, fact)
        session.flush()
        return len(session.scalars(select(TrackRecordRow)).all())

    return store._write(recompute)


def _facts(session: Session) -> Iterable[RunFact]:
    assessed: dict[str, AssessedIncident] = {}
    for row in session.scalars(select(AuditEvent).where(AuditEvent.step == ASSESSED).order_by(AuditEvent.id)):
        value = _trust_value(row.evidence, ASSESSED)
        if value is not None and row.workflow_id not in assessed:
            assessed[row.workflow_id] = AssessedIncident.model_validate_json(value)
    runs = {row.workflow_id: result_of(row) for row in session.scalars(select(Run))}
    for workflow_id, incident in assessed.items():
        result = runs.get(workflow_id)
        if result is None:
            continue
        _add_incident(session, result, incident)
        fact = outcome_fact(result, incident)
        yield fact
        shadow = _shadow_of(session, workflow_id)
        if shadow is not None:
            yield fact.model_copy(update={"shadow": shadow, "outcome": None})
    for workflow_id, result in runs.items():
        original = workflow_id[len(UNDO_PREFIX) :]
        undone = workflow_id.startswith(UNDO_PREFIX) and result.outcome == Outcome.ROLLED_BACK
        if undone and original in assessed and original in runs:
            _add_incident(session, result, assessed[original])
            yield outcome_fact(runs[original], assessed[original]).model_copy(update={"undone": True})
    feedback = select(AuditEvent).where(AuditEvent.workflow_id == GOVERNANCE, AuditEvent.step == FEEDBACK)
    for row in session.scalars(feedback.order_by(AuditEvent.id)):
        for item in row.evidence:
            run = str(item.get("query"))
            if item.get("source") == "suture.feedback" and run in assessed and run in runs:
                verdict = Feedback(str(item.get("value")))
                yield outcome_fact(runs[run], assessed[run]).model_copy(update={"feedback": verdict})


# --- reads ---------------------------------------------------------------------------------------


def track_records(store: AuditStore, policy: str | None = None) -> list[TrackRecord]:
    query = select(TrackRecordRow).order_by(
        TrackRecordRow.policy, TrackRecordRow.action, TrackRecordRow.signature
    )
    if policy is not None:
        query = query.where(TrackRecordRow.policy == policy)
    with store._reads() as session:
        return [TrackRecord.model_validate(row.record) for row in session.scalars(query)]


def assess(store: AuditStore, query: TrustQuery) -> TrustAssessment:
    """What the store knows about ``query``'s incident: overrides, exception, record, nearest incidents."""
    key = query.signature.key()
    with store._reads() as session:
        standings = []
        for action in query.actions:
            override = session.get(TrustOverrideRow, (query.policy, action))
            row = session.get(TrackRecordRow, (query.policy, action, key))
            standings.append(
                ClassStanding(
                    action=action,
                    override=Mode(override.mode) if override else None,
                    by=override.by if override else "",
                    reason=override.reason if override else "",
                    record=TrackRecord.model_validate(row.record) if row else None,
                )
            )
        same = [
            TrackRecord.model_validate(row.record)
            for row in session.scalars(select(TrackRecordRow).where(TrackRecordRow.signature == key))
        ]
        exception = _active_exception(session, query.targets, query.at)
        nearest = _nearest(session, query.signature)
    return TrustAssessment(
        standings=standings,
        exception=exception,
        good=sum(record.good for record in same),
        bad=sum(record.bad for record in same),
        nearest=nearest,
    )


def _nearest(session: Session, signature: IncidentSignature) -> list[PastIncident]:
    rows = session.scalars(
        select(IncidentSignatureRow)
        .where(IncidentSignatureRow.loop == str(signature.loop))
        .order_by(IncidentSignatureRow.at.desc())
        .limit(500)
    )
    scored = []
    for row in rows:
        past = IncidentSignature.from_key(row.signature)
        shared = signature.shared(past)
        if shared:
            scored.append(
                PastIncident(
                    workflow_id=row.workflow_id,
                    signature=row.signature,
                    shared=shared,
                    outcome=row.outcome,
                    resolution=row.resolution,
                    at=row.at,
                )
            )
    scored.sort(key=lambda item: (-item.shared, -(item.at.timestamp() if item.at else 0.0)))
    return scored[:NEAREST]


# --- overrides ------------------------------------------------------------------------------------


def promote(store: AuditStore, loop: Loop, policy: str, action: str, by: str, reason: str) -> None:
    """Run ``action`` of ``policy`` autonomously from now on: a person's decision, audited."""
    store._write(
        lambda session: _set_override(store, session, loop, policy, action, Mode.AUTONOMOUS, by, reason)
    )


def overrides(store: AuditStore) -> list[Override]:
    with store._reads() as session:
        rows = session.scalars(
            select(TrustOverrideRow).order_by(TrustOverrideRow.policy, TrustOverrideRow.action)
        )
        return [Override(r.policy, r.action, r.mode, r.by, r.reason, r.at) for r in rows]


def _set_override(
    store: AuditStore,
    session: Session,
    loop: Loop,
    policy: str,
    action: str,
    mode: Mode,
    by: str,
    reason: str,
) -> None:
    row = session.get(TrustOverrideRow, (policy, action), with_for_update=True)
    if row is None:
        row = TrustOverrideRow(policy=policy, action=action)
        session.add(row)
    row.mode, row.by, row.reason, row.at = str(mode), by, reason, store._clock()
    step = "promoted" if mode == Mode.AUTONOMOUS else "demoted"
    detail = f"{action} of policy {policy} {step} to {mode} by {by}: {reason}"
    _governance(store, session, loop, f"policy {policy} {action}", step, detail, by)


# --- exceptions -----------------------------------------------------------------------------------


def add_exception(store: AuditStore, loop: Loop, target: str, by: str, reason: str, until: datetime) -> int:
    def add(session: Session) -> int:
        row = TrustExceptionRow(target=target, by=by, reason=reason, until=until, created_at=store._clock())
        session.add(row)
        session.flush()
        detail = f"{by} exempted {target} from actions until {until.isoformat(timespec='minutes')}: {reason}"
        _governance(store, session, loop, f"exception {target}", "exception_added", detail, by)
        return row.id

    return store._write(add)


def remove_exception(store: AuditStore, loop: Loop, target: str, by: str) -> int:
    """End every open exception of ``target`` now; returns how many."""

    def remove(session: Session) -> int:
        now = store._clock()
        rows = session.scalars(
            select(TrustExceptionRow).where(
                TrustExceptionRow.target == target, TrustExceptionRow.removed_at.is_(None)
            )
        ).all()
        for row in rows:
            row.removed_at, row.removed_by = now, by
        if rows:
            _governance(
                store,
                session,
                loop,
                f"exception {target}",
                "exception_removed",
                f"{by} ended the exception of {target}",
                by,
            )
        return len(rows)

    return store._write(remove)


def exceptions(store: AuditStore, at: datetime) -> list[TrustException]:
    with store._reads() as session:
        rows = session.scalars(select(TrustExceptionRow).order_by(TrustExceptionRow.until)).all()
        return [
            TrustException(r.id, r.target, r.by, r.reason, r.until, r.removed_at is None and r.until > at)
            for r in rows
        ]


def _active_exception(session: Session, targets: list[str], at: datetime) -> str | None:
    if not targets:
        return None
    rows = session.scalars(
        select(TrustExceptionRow).where(TrustExceptionRow.removed_at.is_(None), TrustExceptionRow.until > at)
    )
    for row in rows:
        for target in targets:
            if _covers(row.target, target):
                until = row.until.isoformat(timespec="minutes")
                return f"{target} is exempt from actions until {until} ({row.by}: {row.reason})"
    return None


def _covers(pattern: str, target: str) -> bool:
    """``shop/checkout`` covers itself; ``shop/*`` covers every target of ``shop``."""
    if pattern.endswith("/*"):
        return target.startswith(pattern[:-1])
    return pattern == target


# --- audit ------------------------------------------------------------------------------------------


def _governance(
    store: AuditStore,
    session: Session,
    loop: Loop,
    subject: str,
    step: str,
    detail: str,
    by: str,
    evidence: list[Evidence] | None = None,
) -> None:
    head = store._locked_head(session)
    entry = AuditEntry(
        workflow_id=GOVERNANCE,
        seq=_next_seq(session, GOVERNANCE),
        loop=loop,
        subject=subject,
        step=step,
        detail=detail,
        actor=by,
        evidence=evidence or [],
        at=store._clock(),
    )
    store._append(session, head, entry)


def assessed_evidence(incident: AssessedIncident, at: datetime) -> Evidence:
    """The evidence item a run's ``assessed`` audit entry carries (see :func:`record_closed_run`)."""
    return Evidence(source=TRUST_EVIDENCE, query=ASSESSED, value=incident.model_dump_json(), at=at)


def dumps(value: object) -> str:
    return json.dumps(value, default=str)

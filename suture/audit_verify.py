"""``suture audit verify``: walk the chain once and check everything that can be checked.

In insert order, each event must link to the one before it (plain hash), carry a
valid MAC once the chain is keyed, and match the head file at the position the
file checkpointed. Then the head row must name the last event, count the events
and carry its MAC; the head file must not record more events than remain; and
every ``runs`` row must equal the seal the chain holds for it (no row edited,
added or deleted). The first broken event is reported, not the cascade after it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from suture.audit_chain import (
    GENESIS,
    RUNS,
    AuditKey,
    ChainBreak,
    ChainReport,
    HeadCheckpoint,
    chain_hash,
    read_checkpoint,
    run_seal,
)
from suture.tables import AuditChainHead, AuditEvent, Run, entry_of, result_of


def head_mac(key: AuditKey, head: AuditChainHead) -> str:
    """The MAC of everything the head row claims, including where keying began."""
    return key.sign(*_head_parts(head))


def event_mac(key: AuditKey, event_hash: str) -> str:
    return key.sign("event", event_hash)


def verify_store(session: Session, key: AuditKey, checkpoint_path: Path | None) -> ChainReport:
    """Check the chain, its head, the head file and the runs table read through ``session``.

    ``session`` must not have read anything yet, and must read one snapshot (SQLite's
    transactions do; PostgreSQL needs REPEATABLE READ): the head file is read first,
    so that the snapshot taken afterwards holds at least the events it records while
    writers carry on.
    """
    breaks: list[ChainBreak] = []
    checkpoint = _read_checkpoint(checkpoint_path, key, breaks)
    head = session.get(AuditChainHead, 1)
    keyed = head is not None and head.key_id is not None
    keyed_from = (head.keyed_from or 0) if keyed and head else (head.seq if head else 0)
    walk = _ChainWalk(key if keyed else None, keyed_from, checkpoint, checkpoint_path)
    for row in session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(500):
        walk.visit(row)
    if walk.first_break is not None:
        breaks.insert(0, walk.first_break)
    elif head is not None:
        breaks.extend(_head_breaks(head, walk, key if keyed else None))
    if checkpoint is not None and checkpoint.seq > walk.position:
        breaks.append(
            ChainBreak(
                event_id=None,
                reason=(
                    f"the chain ends at event {walk.position} but the head file {checkpoint_path} recorded "
                    f"{checkpoint.seq} events: events were removed from the end or an older copy of the "
                    "database was restored"
                ),
                checked=walk.position,
            )
        )
    runs = list(session.scalars(select(Run).order_by(Run.workflow_id)))
    breaks.extend(_run_breaks(runs, walk.seals, walk.position))
    return ChainReport(
        events=walk.position,
        legacy_events=min(keyed_from, walk.position),
        runs=len(runs),
        key_id=key.key_id,
        checkpoint=str(checkpoint_path) if checkpoint is not None else None,
        breaks=breaks,
    )


class _ChainWalk:
    def __init__(
        self,
        key: AuditKey | None,
        keyed_from: int,
        checkpoint: HeadCheckpoint | None,
        checkpoint_path: Path | None,
    ) -> None:
        self.key, self.keyed_from = key, keyed_from
        self.checkpoint, self.checkpoint_path = checkpoint, checkpoint_path
        self.expected, self.position = GENESIS, 0
        self.last_id: int | None = None
        self.first_break: ChainBreak | None = None
        self.seals: dict[str, str] = {}
        """Newest seal per run, from the ``runs`` events."""

    def visit(self, row: AuditEvent) -> None:
        self.position += 1
        if row.workflow_id == RUNS:
            self.seals[row.subject] = row.detail
        if self.first_break is not None:
            return
        reason = _broken_link(row, self.expected) or self._mac_problem(row) or self._checkpoint_problem(row)
        if reason:
            self.first_break = ChainBreak(
                event_id=row.id,
                workflow_id=row.workflow_id,
                seq=row.seq,
                reason=reason,
                checked=self.position - 1,
            )
            return
        self.expected, self.last_id = row.hash, row.id

    def _mac_problem(self, row: AuditEvent) -> str:
        if self.key is None or self.position <= self.keyed_from:
            return ""
        if row.mac is None:
            return (
                f"the event carries no MAC although the chain is keyed from event {self.keyed_from + 1}: "
                "it was inserted or rewritten without the audit key"
            )
        if not self.key.verifies(row.mac, "event", row.hash):
            return (
                "the event's MAC does not match its hash: history was rewritten with recomputed hashes "
                "(or written with another audit key)"
            )
        return ""

    def _checkpoint_problem(self, row: AuditEvent) -> str:
        checkpoint = self.checkpoint
        if checkpoint is None or self.position != checkpoint.seq or row.hash == checkpoint.hash:
            return ""
        return (
            f"the head file {self.checkpoint_path} recorded a different event at position {self.position}: "
            "history up to here was rewritten"
        )


def _broken_link(row: AuditEvent, expected_prev: str) -> str:
    if row.prev_hash != expected_prev:
        return "prev_hash does not match the previous event's hash: an event was removed or reordered"
    try:
        recomputed = chain_hash(row.prev_hash, entry_of(row))
    except ValueError as error:
        return f"the stored event no longer reads as an audit entry: {error}"
    if recomputed != row.hash:
        return "the event's content does not match its hash: it was edited after it was recorded"
    return ""


def _head_breaks(head: AuditChainHead, walk: _ChainWalk, key: AuditKey | None) -> list[ChainBreak]:
    reasons = []
    if (head.hash, head.last_event_id) != (walk.expected, walk.last_id):
        reasons.append(
            f"the newest event is {walk.last_id} but the chain head records {head.last_event_id}: "
            "events were removed from the end or the head was edited"
        )
    elif head.seq != walk.position:
        reasons.append(f"the chain holds {walk.position} events but its head records {head.seq}")
    if key is not None and not key.verifies(head.mac, *_head_parts(head)):
        reasons.append("the chain head's MAC does not match: the head was rewritten without the audit key")
    return [ChainBreak(event_id=None, reason=reason, checked=walk.position) for reason in reasons]


def _head_parts(head: AuditChainHead) -> tuple[object, ...]:
    return ("head", head.seq, head.last_event_id, head.hash, head.key_id, head.keyed_from)


def _read_checkpoint(path: Path | None, key: AuditKey, breaks: list[ChainBreak]) -> HeadCheckpoint | None:
    if path is None:
        return None
    try:
        checkpoint = read_checkpoint(path)
    except ValueError as error:
        breaks.append(ChainBreak(event_id=None, reason=str(error), checked=0))
        return None
    if checkpoint is not None and not checkpoint.signed_by(key):
        breaks.append(
            ChainBreak(
                event_id=None,
                reason=f"the head file {path} is not signed with this audit key: it was edited or replaced",
                checked=0,
            )
        )
        return None
    return checkpoint


def _run_breaks(runs: list[Run], seals: dict[str, str], checked: int) -> list[ChainBreak]:
    breaks = []
    for row in runs:
        recorded = seals.pop(row.workflow_id, None)
        reason = _run_difference(row, recorded)
        if reason:
            breaks.append(ChainBreak(event_id=None, run=row.workflow_id, reason=reason, checked=checked))
    for workflow_id, recorded in seals.items():
        reason = f"the runs row was deleted; the chain recorded {_readable(recorded)}"
        breaks.append(ChainBreak(event_id=None, run=workflow_id, reason=reason, checked=checked))
    return breaks


def _run_difference(row: Run, recorded: str | None) -> str:
    try:
        seal = run_seal(result_of(row))
    except ValueError as error:
        return f"the runs row no longer reads as a run: {error}"
    if recorded is None:
        return "the runs row has no seal in the audit chain: it was added outside suture"
    if seal == recorded:
        return ""
    if _readable(seal) == _readable(recorded):
        return "the runs row differs from its seal in the audit chain (a field other than these was edited)"
    return f"the runs row says {_readable(seal)} but the audit chain recorded {_readable(recorded)}"


def _readable(seal: str) -> str:
    return f"«{seal.rpartition('; record ')[0] or seal}»"

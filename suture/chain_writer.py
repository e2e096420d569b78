"""Appending to the keyed audit chain: the one place that writes events.

Every append happens inside a write transaction holding the chain head's lock,
signs the event and the head with the audit key, and, once the transaction has
committed, rewrites the head file outside the database. The first writer to meet
an unkeyed chain (a database from before keys existed) keys it: the events so
far stay legacy and every runs row is sealed into the chain.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from suture.audit_chain import (
    GENESIS,
    RUN_SEALED,
    RUNS,
    AuditKey,
    HeadCheckpoint,
    chain_hash,
    key_mismatch,
    run_seal,
    write_checkpoint,
)
from suture.audit_verify import event_mac, head_mac
from suture.models import AuditEntry, Loop
from suture.tables import AuditChainHead, AuditEvent, Run, result_of

log = logging.getLogger(__name__)
_WRITE_ATTEMPTS = 3
_NEW_HEAD = "suture_new_chain_head"
T = TypeVar("T")
GOVERNANCE = "governance"
"""``workflow_id`` of the audit events that record people's acts on suture itself."""


class ChainWriter:
    """Write transactions over the audit tables, and appends to the chain within them.

    Args:
        engine: from :func:`~suture.tables.create_store_engine`; the schema must be current.
        key: the audit key every event and the head are signed with.
        checkpoint: the head file written after each append; None keeps none.
        clock: the time used for locks, cooldowns and governance events.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        key: AuditKey,
        checkpoint: Path | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.key = key
        self.checkpoint = checkpoint
        self._clock = clock or (lambda: datetime.now(UTC))
        self._writes = sessionmaker(engine, expire_on_commit=False)
        # Writers queue here rather than in SQLite's busy handler, whose sleeping
        # back-off turned 64 concurrent activity threads into seconds of latency.
        # Other processes still serialise on the database's own lock.
        self._write_lock = threading.Lock()
        self._reads = sessionmaker(engine.execution_options(suture_read_only=True), expire_on_commit=False)

    def _governance_event(
        self, session: Session, loop: Loop, subject: str, step: str, detail: str, by: str
    ) -> None:
        """Audit a person's act on suture itself, numbered on after the last one."""
        head = self._locked_head(session)  # the chain lock, taken before reading the next seq
        entry = AuditEntry(
            workflow_id=GOVERNANCE,
            seq=_next_seq(session, GOVERNANCE),
            loop=loop,
            subject=subject,
            step=step,
            detail=detail,
            actor=by,
            at=self._clock(),
        )
        self._append(session, head, entry)

    # --- the chain -----------------------------------------------------------------

    def _append(self, session: Session, head: AuditChainHead, entry: AuditEntry) -> bool:
        exists = select(AuditEvent.id).where(
            AuditEvent.workflow_id == entry.workflow_id, AuditEvent.seq == entry.seq
        )
        if session.scalar(exists) is not None:
            return False
        digest = chain_hash(head.hash, entry)
        row = AuditEvent(
            **entry.model_dump(mode="json", exclude={"at"}),
            at=entry.at,
            prev_hash=head.hash,
            hash=digest,
            mac=event_mac(self.key, digest),
        )
        session.add(row)
        session.flush()
        head.last_event_id, head.hash, head.seq = row.id, digest, head.seq + 1
        head.mac = head_mac(self.key, head)
        session.info[_NEW_HEAD] = (head.seq, digest)
        return True

    def _seal_run(self, session: Session, head: AuditChainHead, row: Run, step: str) -> None:
        entry = AuditEntry(
            workflow_id=RUNS,
            seq=_next_seq(session, RUNS),
            loop=Loop(row.loop),
            subject=row.workflow_id,
            step=step,
            detail=run_seal(result_of(row)),
            at=self._clock(),
        )
        self._append(session, head, entry)

    def _locked_head(self, session: Session) -> AuditChainHead:
        """The chain head, locked for this transaction; keys the chain on first use."""
        head = session.get(AuditChainHead, 1, with_for_update=True)
        if head is None:
            head = AuditChainHead(id=1, last_event_id=None, hash=GENESIS, seq=0)
            session.add(head)
            session.flush()
        if head.key_id is None:
            self._key_the_chain(session, head)
        self._check_key(head)
        return head

    def _key_the_chain(self, session: Session, head: AuditChainHead) -> None:
        """Events so far stay legacy; runs closed so far are sealed so the table is covered."""
        head.key_id, head.keyed_from = self.key.key_id, head.seq
        head.mac = head_mac(self.key, head)
        for row in session.scalars(select(Run).order_by(Run.workflow_id)):
            self._seal_run(session, head, row, RUN_SEALED)
        if head.seq:
            log.warning(
                "the audit chain is now keyed (key id %s); events 1..%d were written before the key existed",
                self.key.key_id,
                head.keyed_from,
            )

    def _check_key(self, head: AuditChainHead) -> None:
        if head.key_id != self.key.key_id:
            database = self.engine.url.render_as_string(hide_password=True)
            raise key_mismatch(database, head.key_id or "none", self.key)

    # --- transactions ------------------------------------------------------------------

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction, again if a concurrent insert won a race.

        Once the transaction has committed, a chain that advanced gets its head file.
        """
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                with self._write_lock:
                    with self._writes.begin() as session:
                        outcome = work(session)
                        new_head = session.info.pop(_NEW_HEAD, None)
                    if new_head is not None:
                        self._write_checkpoint(*new_head)
                    return outcome
            except IntegrityError:
                if attempt == _WRITE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _write_checkpoint(self, seq: int, head_hash: str) -> None:
        if self.checkpoint is None:
            return
        try:
            write_checkpoint(self.checkpoint, HeadCheckpoint.sign(self.key, seq, head_hash))
        except OSError as error:
            # The event is committed; failing the write now would only make it retry as a no-op.
            log.error("cannot write the audit head file %s: %s", self.checkpoint, error)


def _next_seq(session: Session, workflow_id: str) -> int:
    last = session.scalar(
        select(func.coalesce(func.max(AuditEvent.seq), 0)).where(AuditEvent.workflow_id == workflow_id)
    )
    return (last or 0) + 1

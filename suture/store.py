"""The audit store: every step suture took, how each run ended, who holds which target.

Four tables carry four promises:

* ``audit_events`` is append-only and tamper-evident. Each event's hash covers the
  previous event's hash and the event's canonical JSON, chained globally in insert
  order, and each carries an HMAC of its hash under the audit key (see
  :mod:`suture.audit_chain`); ``audit_chain`` keeps the signed head so that removing
  the newest events is detected too, and a head file outside the database catches
  a restored older copy. ``(workflow_id, seq)`` is unique, so an activity retried
  after its insert committed writes nothing the second time.
* ``runs`` keeps one row per workflow (the ``LoopResult``), which the morning
  report reads. Closing a run also appends its seal to the chain in the same
  transaction, so ``suture audit verify`` catches a row edited, added or deleted.
* ``target_locks`` is the per-resource lock and cooldown: two runs never act on
  the same target at once, and a target acted on recently is left alone.
* ``loop_stages`` holds each loop's activation stage (:mod:`suture.stages`); a
  change is audited in the same transaction, like a kill switch.
* ``kill_switches`` holds one row per scope (``all`` or a loop's name): a paused
  scope stops that loop's next action. Pulling or releasing a switch is audited in
  the same transaction, so the trail always names who did it.

Every write takes one lock first (the chain head, or the target's row) so that
concurrent writers serialise: ``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite. The module is plain SQLAlchemy 2 and never imports
temporalio; activities wrap it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import func, or_, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from suture.audit_chain import (
    GENESIS,
    KEY_FILE,
    KEY_VARIABLE,
    RUN_CLOSED,
    RUNS,
    AuditKey,
    ChainBreak,
    ChainReport,
    canonical_json,
    chain_hash,
    head_file,
    key_folder,
    load_audit_key,
    run_seal,
)
from suture.audit_verify import verify_store
from suture.chain_writer import GOVERNANCE, ChainWriter
from suture.models import AuditEntry, ClaimResult, Loop, LoopResult, TargetClaim, TargetRelease
from suture.stages import Stage, StageState
from suture.tables import (
    AuditChainHead,
    AuditEvent,
    Base,
    KillSwitchRow,
    LoopStageRow,
    Run,
    TargetLock,
    as_utc,
    create_store_engine,
    entry_of,
    fill_run,
    result_of,
)

if TYPE_CHECKING:
    from suture.config import Settings

__all__ = [
    "ALL_LOOPS",
    "GENESIS",
    "GOVERNANCE",
    "RUNS",
    "AuditStore",
    "Base",
    "ChainBreak",
    "ChainReport",
    "KillSwitch",
    "SwitchState",
    "alembic_config",
    "as_utc",
    "canonical_json",
    "chain_hash",
    "create_store_engine",
]

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x5375747572
"""PostgreSQL advisory lock key held while migrating ("Sutur" in ASCII)."""

ALL_LOOPS = "all"
"""Kill switch scope that pauses every loop."""


class SwitchState(NamedTuple):
    """Whether a loop may act: paused by ``scope`` (``all`` or the loop), pulled by ``by``."""

    paused: bool
    by: str = ""
    reason: str = ""
    scope: str = ""


class KillSwitch(NamedTuple):
    """One row of the kill switch table, as ``suture pause --status`` lists it."""

    scope: str
    paused: bool
    by: str
    reason: str
    at: datetime


class AuditStore(ChainWriter):
    """Repository over the audit tables; safe to share between threads.

    Built by :meth:`create` (or :meth:`from_settings`), which brings the schema up
    to date and checks the audit key; the constructor's arguments are
    :class:`~suture.chain_writer.ChainWriter`'s.
    """

    @classmethod
    def create(
        cls,
        url: str | URL,
        *,
        key: AuditKey | None = None,
        state_dir: Path | None = None,
        migrate: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> AuditStore:
        """Open the store at ``url``, bringing its schema up to date unless ``migrate`` is false.

        Args:
            key: the audit key; by default ``SUTURE_AUDIT_KEY``, else ``audit.key`` in the
                key folder, generated on first use.
            state_dir: the key folder for a server database (default ``SUTURE_STATE_DIR``
                or ``./.suture``). A SQLite file keeps its key and head file beside it.

        Raises:
            ConfigError: the URL is unusable, or ``key`` is not the key the chain was
                written with.
        """
        engine = create_store_engine(url)
        folder = key_folder(url, state_dir)
        if key is None:
            key = load_audit_key(os.environ.get(KEY_VARIABLE), folder / KEY_FILE if folder else None)
        store = cls(engine, key=key, checkpoint=head_file(url, folder), clock=clock)
        if migrate:
            store.upgrade()
            store.adopt_key()
        return store

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> AuditStore:
        """Open the store a process's settings name (``SUTURE_DB_URL``, ``SUTURE_AUDIT_KEY``)."""
        key = AuditKey(settings.audit_key.get_secret_value().encode()) if settings.audit_key else None
        return cls.create(settings.db_url, key=key, state_dir=settings.state_dir, **options)

    def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to ``revision`` on this store's database.

        Processes starting together (worker, ingress, CLI) may all call this; the
        migration runs under a lock so the later ones find the schema current.
        SQLite's ``BEGIN IMMEDIATE`` is that lock; PostgreSQL takes an advisory one.
        """
        from alembic import command

        config = alembic_config(self.engine.url)
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def adopt_key(self) -> None:
        """Key the chain with this store's key if it is not keyed yet; refuse another key.

        A chain written before keys existed keeps its events as legacy: everything
        appended from now on is signed, and each runs row is sealed into the chain.

        Raises:
            ConfigError: the chain is keyed with another key.
        """
        with self._reads() as session:
            head = session.get(AuditChainHead, 1)
            if head is not None and head.key_id is not None:
                self._check_key(head)
                return
        self._write(self._locked_head)

    def close(self) -> None:
        self.engine.dispose()

    # --- audit events ------------------------------------------------------------

    def record(self, entry: AuditEntry) -> bool:
        """Append ``entry`` to the chain. Returns False when it was already recorded."""
        return self._write(lambda session: self._append(session, self._locked_head(session), entry))

    def events(self, workflow_id: str | None = None) -> list[AuditEntry]:
        """Recorded entries in insert order, for one run or for all."""
        query = select(AuditEvent).order_by(AuditEvent.id)
        if workflow_id is not None:
            query = query.where(AuditEvent.workflow_id == workflow_id)
        with self._reads() as session:
            return [entry_of(row) for row in session.scalars(query)]

    def verify(self) -> ChainReport:
        """Check the keyed chain, its head, the head file and the runs table.

        Raises:
            ConfigError: this store's key is not the key the chain was written with.
        """
        with self._reads() as session:
            head = session.get(AuditChainHead, 1)
            if head is not None and head.key_id is not None:
                self._check_key(head)
        # One snapshot for the whole walk, so runs closed meanwhile are not reported as unsealed.
        snapshot = self.engine.execution_options(suture_read_only=True)
        if self.engine.dialect.name == "postgresql":
            snapshot = snapshot.execution_options(isolation_level="REPEATABLE READ")
        with Session(snapshot) as session, session.begin():
            return verify_store(session, self.key, self.checkpoint)

    def verify_chain(self) -> ChainBreak | None:
        """The first break :meth:`verify` finds, or None when everything verifies."""
        breaks = self.verify().breaks
        return breaks[0] if breaks else None

    def count_events(self) -> int:
        with self._reads() as session:
            return session.scalar(select(func.count()).select_from(AuditEvent)) or 0

    def chain_head_seq(self) -> int:
        """How many events the chain holds: the ``suture_audit_chain_head_seq`` gauge."""
        with self._reads() as session:
            head = session.get(AuditChainHead, 1)
            return head.seq if head is not None else 0

    # --- runs ----------------------------------------------------------------------

    def close_run(self, result: LoopResult) -> None:
        """Keep how a run ended and seal it into the chain; a later call replaces the row.

        A retried call with the same result finds its seal current and writes nothing.
        """

        def upsert(session: Session) -> None:
            head = self._locked_head(session)
            row = session.get(Run, result.workflow_id, with_for_update=True)
            if row is None:
                row = Run(workflow_id=result.workflow_id)
                session.add(row)
                previous = None
            else:
                previous = run_seal(result_of(row))
            fill_run(row, result)
            if run_seal(result_of(row)) != previous:
                self._seal_run(session, head, row, RUN_CLOSED)

        self._write(upsert)

    def runs(
        self, since: datetime | None = None, until: datetime | None = None, loop: Loop | None = None
    ) -> list[LoopResult]:
        """Runs that closed in ``[since, until)``, oldest first."""
        when = func.coalesce(Run.closed, Run.detected)
        query = select(Run).order_by(when, Run.workflow_id)
        if since is not None:
            query = query.where(when >= since)
        if until is not None:
            query = query.where(when < until)
        if loop is not None:
            query = query.where(Run.loop == str(loop))
        with self._reads() as session:
            return [result_of(row) for row in session.scalars(query)]

    # --- per-target lock and cooldown ----------------------------------------------

    def claim_target(self, claim: TargetClaim) -> ClaimResult:
        """Grant the target to ``claim.workflow_id`` unless another run holds it or it is cooling down."""

        def claim_lock(session: Session) -> ClaimResult:
            now = self._clock()
            lock = session.get(TargetLock, claim.target, with_for_update=True)
            if lock is None:
                lock = TargetLock(target=claim.target)
                session.add(lock)
            if lock.holder == claim.workflow_id:
                return ClaimResult(granted=True, reason="already held by this run")
            if lock.holder is not None:
                since = lock.acquired_at.isoformat() if lock.acquired_at else "an unknown time"
                return ClaimResult(
                    granted=False, reason=f"{claim.target} is held by {lock.holder} since {since}"
                )
            if lock.last_action_at is not None:
                age = (now - lock.last_action_at).total_seconds()
                if age < claim.cooldown_s:
                    return ClaimResult(
                        granted=False,
                        reason=(
                            f"{claim.target} was acted on {age:.0f}s ago; cooldown is {claim.cooldown_s:.0f}s"
                        ),
                    )
            lock.holder, lock.acquired_at = claim.workflow_id, now
            return ClaimResult(granted=True, reason=f"{claim.target} claimed")

        return self._write(claim_lock)

    def release_target(self, release: TargetRelease) -> bool:
        """Give the target back; stamp the cooldown when the run acted on it.

        Returns False (and changes nothing) when the run does not hold the target,
        which is what a retried release sees.
        """

        def release_lock(session: Session) -> bool:
            lock = session.get(TargetLock, release.target, with_for_update=True)
            if lock is None or lock.holder != release.workflow_id:
                return False
            lock.holder, lock.acquired_at = None, None
            if release.acted:
                lock.last_action_at = self._clock()
            return True

        return self._write(release_lock)

    def lock_holder(self, target: str) -> str | None:
        """The workflow holding ``target``'s lock, if any."""
        with self._reads() as session:
            lock = session.get(TargetLock, target)
            return lock.holder if lock is not None else None

    def lock_holders(self, targets: Iterable[str]) -> dict[str, str]:
        """Of ``targets``, those whose lock a run holds, with that run; one query per 500 targets."""
        wanted, held = list(dict.fromkeys(targets)), {}
        with self._reads() as session:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = select(TargetLock).where(TargetLock.target.in_(chunk), TargetLock.holder.is_not(None))
                held.update({lock.target: lock.holder for lock in session.scalars(query) if lock.holder})
        return held

    def break_lock(self, target: str, by: str, reason: str = "") -> str | None:
        """Take ``target``'s lock from its holder (a run that was terminated never releases it).

        Keeps the cooldown stamp and audits the break under ``by``. Returns the
        workflow the lock was taken from, or None when nobody held it.
        """

        def take(session: Session) -> str | None:
            lock = session.get(TargetLock, target, with_for_update=True)
            if lock is None or lock.holder is None:
                return None
            holder, lock.holder, lock.acquired_at = lock.holder, None, None
            self._governance_event(
                session,
                _loop_of(holder),
                f"lock {target}",
                "lock_broken",
                f"{by} took the lock of {target} from {holder}" + (f": {reason}" if reason else ""),
                by,
            )
            return holder

        return self._write(take)

    # --- kill switch ------------------------------------------------------------------

    def pause(self, scope: str, by: str, reason: str = "") -> None:
        """Pull the kill switch of ``scope`` (``all`` or a loop's name) and audit it under ``by``.

        Raises:
            ValueError: when ``scope`` names no loop.
        """
        self._set_switch(scope, True, by, reason)

    def resume(self, scope: str, by: str) -> None:
        """Release the kill switch of ``scope`` and audit it under ``by``.

        Resuming ``all`` releases only the global switch; a loop paused on its own
        stays paused until it is resumed by name.

        Raises:
            ValueError: when ``scope`` names no loop.
        """
        self._set_switch(scope, False, by, "")

    def switch_state(self, loop: Loop | str) -> SwitchState:
        """Whether ``loop`` is paused, by its own switch or the global one (the global one wins)."""
        query = select(KillSwitchRow).where(
            KillSwitchRow.paused.is_(True),
            or_(KillSwitchRow.scope == ALL_LOOPS, KillSwitchRow.scope == str(loop)),
        )
        with self._reads() as session:
            rows = sorted(session.scalars(query), key=lambda row: row.scope != ALL_LOOPS)
        if not rows:
            return SwitchState(paused=False)
        return SwitchState(paused=True, by=rows[0].by, reason=rows[0].reason, scope=rows[0].scope)

    def switches(self) -> list[KillSwitch]:
        """Every switch ever pulled, paused or released, ``all`` first."""
        with self._reads() as session:
            rows = list(session.scalars(select(KillSwitchRow).order_by(KillSwitchRow.scope)))
        rows.sort(key=lambda row: row.scope != ALL_LOOPS)
        return [KillSwitch(row.scope, row.paused, row.by, row.reason, row.at) for row in rows]

    def _set_switch(self, scope: str, paused: bool, by: str, reason: str) -> None:
        loops = [str(loop) for loop in Loop]
        if scope != ALL_LOOPS and scope not in loops:
            raise ValueError(f"no loop {scope!r}: the kill switch scope is {ALL_LOOPS} or one of {loops}")

        def flip(session: Session) -> None:
            now = self._clock()
            row = session.get(KillSwitchRow, scope, with_for_update=True)
            if row is None:
                row = KillSwitchRow(scope=scope)
                session.add(row)
            row.paused, row.by, row.reason, row.at = paused, by, reason, now
            # One event per loop affected, so each loop's trail shows the switch.
            verb = "paused" if paused else "resumed"
            which = "every loop" if scope == ALL_LOOPS else f"the {scope} loop"
            detail = f"{by} {verb} {which}" + (f": {reason}" if reason else "")
            for loop in Loop if scope == ALL_LOOPS else [Loop(scope)]:
                self._governance_event(session, loop, f"kill switch {scope}", verb, detail, by)

        self._write(flip)

    # --- activation stages -----------------------------------------------------------

    def stage(self, loop: Loop, default: Stage = Stage.READ_ONLY) -> StageState:
        """The stage ``loop`` is at; ``default`` (not ``configured``) when nobody has set one."""
        with self._reads() as session:
            row = session.get(LoopStageRow, str(loop))
        if row is None:
            return StageState(loop=loop, stage=default)
        return StageState(
            loop=loop, stage=Stage(row.stage), since=row.since, by=row.by, reason=row.reason, configured=True
        )

    def set_stage(self, loop: Loop, stage: Stage, by: str, reason: str = "") -> StageState:
        """Put ``loop`` at ``stage`` and audit who did it and why; the same stage again changes nothing."""

        def move(session: Session) -> StageState:
            now = self._clock()
            row = session.get(LoopStageRow, str(loop), with_for_update=True)
            if row is not None and row.stage == str(stage):
                return StageState(
                    loop=loop, stage=stage, since=row.since, by=row.by, reason=row.reason, configured=True
                )
            before = row.stage if row is not None else "the default stage"
            if row is None:
                row = LoopStageRow(loop=str(loop))
                session.add(row)
            row.stage, row.since, row.by, row.reason = str(stage), now, by, reason
            detail = f"{by} moved the {loop} loop from {before} to {stage}" + (
                f": {reason}" if reason else ""
            )
            self._governance_event(session, loop, f"stage {loop}", "stage_changed", detail, by)
            return StageState(loop=loop, stage=stage, since=now, by=by, reason=reason, configured=True)

        return self._write(move)

    def events_at(
        self, step: str, since: datetime | None = None, loop: Loop | None = None
    ) -> list[AuditEntry]:
        """Recorded entries of one ``step`` (e.g. ``verified``), oldest first."""
        query = select(AuditEvent).where(AuditEvent.step == step).order_by(AuditEvent.id)
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        if loop is not None:
            query = query.where(AuditEvent.loop == str(loop))
        with self._reads() as session:
            return [entry_of(row) for row in session.scalars(query)]


def _loop_of(workflow_id: str) -> Loop:
    """The loop a run belongs to, from its ID (``reliability-…``, ``security-…``)."""
    prefix = workflow_id.split("-", 1)[0]
    return Loop(prefix) if prefix in {str(loop) for loop in Loop} else Loop.RELIABILITY


def alembic_config(url: str | URL) -> Any:
    """An Alembic ``Config`` for the shipped migrations, pointed at ``url``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    rendered = make_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config

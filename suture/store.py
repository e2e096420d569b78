"""The audit store: every step suture took, how each run ended, who holds which target.

Three tables carry three promises:

* ``audit_events`` is append-only and tamper-evident. Each event's hash covers the
  previous event's hash and the event's canonical JSON, chained globally in insert
  order; ``audit_chain`` keeps the head so that removing the newest events is
  detected too. ``(workflow_id, seq)`` is unique, so an activity retried after its
  insert committed writes nothing the second time.
* ``runs`` keeps one row per workflow (the ``LoopResult``), which the morning
  report reads.
* ``target_locks`` is the per-resource lock and cooldown: two runs never act on
  the same target at once, and a target acted on recently is left alone.
* ``kill_switches`` holds one row per scope (``all`` or a loop's name): a paused
  scope stops that loop's next action. Pulling or releasing a switch is audited in
  the same transaction, so the trail always names who did it.

Every write takes one lock first (the chain head, or the target's row) so that
concurrent writers serialise: ``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite. The module is plain SQLAlchemy 2 and never imports
temporalio; activities wrap it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from suture.errors import ConfigError
from suture.models import (
    ActionRecord,
    AuditEntry,
    Briefing,
    ClaimResult,
    Evidence,
    Loop,
    LoopResult,
    Mode,
    Outcome,
    TargetClaim,
    TargetRelease,
    Timeline,
    Verdict,
)

GENESIS = "0" * 64
"""``prev_hash`` of the first event of the chain."""

MIGRATIONS = Path(__file__).parent / "migrations"
_WRITE_ATTEMPTS = 3
_MIGRATION_LOCK = 0x5375747572
"""PostgreSQL advisory lock key held while migrating ("Sutur" in ASCII)."""
T = TypeVar("T")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored and returned as UTC, whatever the dialect keeps.

    SQLite has no time zones and hands back naive values; normalising here keeps
    comparisons and the audit hash identical on SQLite and PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT keys do not alias SQLite's rowid, so they would not autoincrement there.
_EventId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("workflow_id", "seq", name="uq_audit_events_workflow_seq"),
        Index("ix_audit_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(_EventId, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int] = mapped_column(Integer)
    loop: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(512))
    step: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255))
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditChainHead(Base):
    """The single row naming the newest event of the chain; also the writers' lock."""

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[int | None] = mapped_column(_EventId, nullable=True)
    hash: Mapped[str] = mapped_column(String(64))


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_loop_closed", "loop", "closed"),)

    workflow_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    loop: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str | None] = mapped_column(String(32))
    policy: Mapped[str | None] = mapped_column(String(255))
    policy_version: Mapped[str | None] = mapped_column(String(64))
    verdict: Mapped[str | None] = mapped_column(String(32))
    detected: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acted: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    human_touched: Mapped[bool] = mapped_column(Boolean, default=False)
    approver: Mapped[str | None] = mapped_column(String(255))
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    briefing: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class TargetLock(Base):
    __tablename__ = "target_locks"

    target: Mapped[str] = mapped_column(String(512), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255))
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class KillSwitchRow(Base):
    __tablename__ = "kill_switches"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean)
    by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


_TIMELINE = ("detected", "decided", "approved", "acted", "verified", "closed")
ALL_LOOPS = "all"
"""Kill switch scope that pauses every loop."""
GOVERNANCE = "governance"
"""``workflow_id`` of the audit events that record kill switches pulled and released."""


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


class ChainBreak(BaseModel):
    """Where :meth:`AuditStore.verify_chain` found the chain broken, and how."""

    model_config = ConfigDict(extra="forbid")

    event_id: int | None
    workflow_id: str | None = None
    seq: int | None = None
    reason: str
    checked: int
    """Events that verified before the break."""

    def __str__(self) -> str:
        where = (
            f"event {self.event_id} ({self.workflow_id} #{self.seq})" if self.event_id else "the chain head"
        )
        return f"{where}: {self.reason}"


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    """sha256 of the previous hash followed by the entry's canonical JSON."""
    return hashlib.sha256((prev_hash + canonical_json(entry)).encode()).hexdigest()


def canonical_json(entry: AuditEntry) -> str:
    """The entry as sorted, compact JSON with its timestamp in UTC microseconds."""
    fields = entry.model_dump(mode="json")
    fields["at"] = as_utc(entry.at).isoformat(timespec="microseconds")
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def create_store_engine(url: str | URL) -> Engine:
    """An engine for ``url``, tuned so activity threads can share it.

    SQLite gets WAL (readers never block the writer), a busy timeout instead of
    instant ``database is locked`` errors, and ``BEGIN IMMEDIATE`` for writes so
    that read-then-write transactions cannot deadlock. An in-memory SQLite database
    is one shared connection and suits single-threaded tests only.

    Raises:
        ConfigError: when the URL does not parse or its database driver is missing.
    """
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True)
    except ImportError as error:
        raise ConfigError(
            f"SUTURE_DB_URL: the database driver is not installed ({error}); "
            "for PostgreSQL: pip install 'suture[postgres]'"
        ) from error
    except (ArgumentError, NoSuchModuleError) as error:
        raise ConfigError(f"SUTURE_DB_URL: not a usable SQLAlchemy URL: {error}") from error
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if in_memory:
        options["poolclass"] = StaticPool
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **options)
    _serialise_sqlite_writers(engine, wal=not in_memory)
    return engine


def _serialise_sqlite_writers(engine: Engine, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN so that it can be IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get("suture_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class AuditStore:
    """Repository over the audit tables; safe to share between threads.

    Args:
        engine: from :func:`create_store_engine`; the schema must be current
            (see :meth:`create` and :meth:`upgrade`).
        clock: the time used for locks and cooldowns; tests pass a fake one.
    """

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))
        self._writes = sessionmaker(engine, expire_on_commit=False)
        # Writers queue here rather than in SQLite's busy handler, whose sleeping
        # back-off turned 64 concurrent activity threads into seconds of latency.
        # Other processes still serialise on the database's own lock.
        self._write_lock = threading.Lock()
        self._reads = sessionmaker(engine.execution_options(suture_read_only=True), expire_on_commit=False)

    @classmethod
    def create(
        cls, url: str | URL, *, migrate: bool = True, clock: Callable[[], datetime] | None = None
    ) -> AuditStore:
        """Open the store at ``url``, bringing its schema up to date unless ``migrate`` is false."""
        store = cls(create_store_engine(url), clock=clock)
        if migrate:
            store.upgrade()
        return store

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

    def close(self) -> None:
        self.engine.dispose()

    # --- audit events ------------------------------------------------------------

    def record(self, entry: AuditEntry) -> bool:
        """Append ``entry`` to the chain. Returns False when it was already recorded."""
        return self._write(lambda session: self._append(session, entry))

    def _append(self, session: Session, entry: AuditEntry) -> bool:
        head = self._chain_head(session)
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
        )
        session.add(row)
        session.flush()
        head.last_event_id, head.hash = row.id, digest
        return True

    def events(self, workflow_id: str | None = None) -> list[AuditEntry]:
        """Recorded entries in insert order, for one run or for all."""
        query = select(AuditEvent).order_by(AuditEvent.id)
        if workflow_id is not None:
            query = query.where(AuditEvent.workflow_id == workflow_id)
        with self._reads() as session:
            return [_entry_of(row) for row in session.scalars(query)]

    def verify_chain(self) -> ChainBreak | None:
        """Recompute every hash in insert order.

        Returns:
            None when the chain is intact, else the first event that breaks it.
        """
        expected, checked = GENESIS, 0
        last_id: int | None = None
        with self._reads() as session:
            for row in session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(500):
                broken = _broken_link(row, expected)
                if broken:
                    return ChainBreak(
                        event_id=row.id,
                        workflow_id=row.workflow_id,
                        seq=row.seq,
                        reason=broken,
                        checked=checked,
                    )
                expected, last_id, checked = row.hash, row.id, checked + 1
            head = session.get(AuditChainHead, 1)
        head_hash, head_id = (head.hash, head.last_event_id) if head else (GENESIS, None)
        if (head_hash, head_id) != (expected, last_id):
            return ChainBreak(
                event_id=None,
                reason=(
                    f"the newest event is {last_id} but the chain head records {head_id}: "
                    "events were removed from the end or the head was edited"
                ),
                checked=checked,
            )
        return None

    def count_events(self) -> int:
        with self._reads() as session:
            return session.scalar(select(func.count()).select_from(AuditEvent)) or 0

    # --- runs ----------------------------------------------------------------------

    def close_run(self, result: LoopResult) -> None:
        """Keep how a run ended; a second call for the same workflow replaces the row."""

        def upsert(session: Session) -> None:
            row = session.get(Run, result.workflow_id, with_for_update=True)
            if row is None:
                row = Run(workflow_id=result.workflow_id)
                session.add(row)
            _fill_run(row, result)

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
            return [_result_of(row) for row in session.scalars(query)]

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

    def _governance_event(
        self, session: Session, loop: Loop, subject: str, step: str, detail: str, by: str
    ) -> None:
        """Audit a person's act on suture itself, numbered on after the last one."""
        self._chain_head(session)  # the chain lock, taken before reading the next seq
        seq = session.scalar(
            select(func.coalesce(func.max(AuditEvent.seq), 0)).where(AuditEvent.workflow_id == GOVERNANCE)
        )
        entry = AuditEntry(
            workflow_id=GOVERNANCE,
            seq=(seq or 0) + 1,
            loop=loop,
            subject=subject,
            step=step,
            detail=detail,
            actor=by,
            at=self._clock(),
        )
        self._append(session, entry)

    # --- plumbing ------------------------------------------------------------------

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction, again if a concurrent insert won a race."""
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                with self._write_lock, self._writes.begin() as session:
                    return work(session)
            except IntegrityError:
                if attempt == _WRITE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _chain_head(session: Session) -> AuditChainHead:
        head = session.get(AuditChainHead, 1, with_for_update=True)
        if head is None:
            head = AuditChainHead(id=1, last_event_id=None, hash=GENESIS)
            session.add(head)
            session.flush()
        return head


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


def _broken_link(row: AuditEvent, expected_prev: str) -> str:
    if row.prev_hash != expected_prev:
        return "prev_hash does not match the previous event's hash: an event was removed or reordered"
    try:
        recomputed = chain_hash(row.prev_hash, _entry_of(row))
    except ValueError as error:
        return f"the stored event no longer reads as an audit entry: {error}"
    if recomputed != row.hash:
        return "the event's content does not match its hash: it was edited after it was recorded"
    return ""


def _entry_of(row: AuditEvent) -> AuditEntry:
    return AuditEntry(
        workflow_id=row.workflow_id,
        seq=row.seq,
        loop=Loop(row.loop),
        subject=row.subject,
        step=row.step,
        detail=row.detail,
        actor=row.actor,
        evidence=[Evidence.model_validate(item) for item in row.evidence],
        at=row.at,
    )


def _fill_run(row: Run, result: LoopResult) -> None:
    row.loop, row.subject, row.outcome = str(result.loop), result.subject, str(result.outcome)
    row.mode = str(result.mode) if result.mode else None
    row.verdict = str(result.verdict) if result.verdict else None
    row.policy, row.policy_version = result.policy, result.policy_version
    for name in _TIMELINE:
        setattr(row, name, getattr(result.timeline, name))
    row.received_at = result.received_at
    row.human_touched, row.approver = result.human_touched, result.approver
    row.actions = [action.model_dump(mode="json") for action in result.actions]
    row.reason = result.reason
    row.briefing = result.briefing.model_dump(mode="json") if result.briefing else None


def _result_of(row: Run) -> LoopResult:
    return LoopResult(
        workflow_id=row.workflow_id,
        loop=Loop(row.loop),
        subject=row.subject,
        outcome=Outcome(row.outcome),
        mode=Mode(row.mode) if row.mode else None,
        reason=row.reason,
        policy=row.policy,
        policy_version=row.policy_version,
        verdict=Verdict(row.verdict) if row.verdict else None,
        actions=[ActionRecord.model_validate(item) for item in row.actions],
        timeline=Timeline(**{name: getattr(row, name) for name in _TIMELINE}),
        human_touched=row.human_touched,
        approver=row.approver,
        briefing=Briefing.model_validate(row.briefing) if row.briefing else None,
        received_at=row.received_at,
    )

"""The audit store's tables, its engine, and the mapping between rows and suture's models.

Kept apart from :mod:`suture.store` (which decides what is written when) so the
chain verifier and the Alembic environment can read the schema without the
repository. Timestamps are normalised to UTC on the way in and out so that the
audit hashes come out identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from suture.errors import ConfigError
from suture.models import (
    ActionRecord,
    AuditEntry,
    Briefing,
    Evidence,
    Loop,
    LoopResult,
    Mode,
    Outcome,
    Timeline,
    Verdict,
)

TIMELINE = ("detected", "decided", "approved", "acted", "verified", "closed")


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
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """HMAC of ``hash`` under the audit key; None on events written before the key existed."""


class AuditChainHead(Base):
    """The single row naming the newest event of the chain; also the writers' lock."""

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[int | None] = mapped_column(_EventId, nullable=True)
    hash: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many events the chain holds."""
    key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """Fingerprint of the key the chain is written with (never the key)."""
    keyed_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Events ``1..keyed_from`` were written before the key existed (legacy, unkeyed)."""
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


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


class LoopStageRow(Base):
    """A loop's activation stage (see :mod:`suture.stages`); no row means the default stage."""

    __tablename__ = "loop_stages"

    loop: Mapped[str] = mapped_column(String(32), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)


# --- engine ------------------------------------------------------------------------------


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
    database = sqlite_file(parsed)
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if database is None:
        options["poolclass"] = StaticPool
    else:
        database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **options)
    _serialise_sqlite_writers(engine, wal=database is not None)
    return engine


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or another dialect."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or "mode=memory" in database:
        return None
    return Path(database)


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


# --- rows <-> models ---------------------------------------------------------------------


def entry_of(row: AuditEvent) -> AuditEntry:
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


def fill_run(row: Run, result: LoopResult) -> None:
    row.loop, row.subject, row.outcome = str(result.loop), result.subject, str(result.outcome)
    row.mode = str(result.mode) if result.mode else None
    row.verdict = str(result.verdict) if result.verdict else None
    row.policy, row.policy_version = result.policy, result.policy_version
    for name in TIMELINE:
        setattr(row, name, getattr(result.timeline, name))
    row.received_at = result.received_at
    row.human_touched, row.approver = result.human_touched, result.approver
    row.actions = [action.model_dump(mode="json") for action in result.actions]
    row.reason = result.reason
    row.briefing = result.briefing.model_dump(mode="json") if result.briefing else None


def result_of(row: Run) -> LoopResult:
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
        timeline=Timeline(**{name: getattr(row, name) for name in TIMELINE}),
        human_touched=row.human_touched,
        approver=row.approver,
        briefing=Briefing.model_validate(row.briefing) if row.briefing else None,
        received_at=row.received_at,
    )


class DependencyEdgeRow(Base):
    """One edge of the dependency graph: ``source`` calls ``target``, seen by ``sources``."""

    __tablename__ = "dependency_edges"

    source: Mapped[str] = mapped_column(String(255), primary_key=True)
    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    sources: Mapped[list[str]] = mapped_column(JSON)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[str] = mapped_column(Text, default="")

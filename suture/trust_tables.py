"""The tables of earned trust: track records, incident signatures, overrides and exceptions.

``trust_records`` and ``incident_signatures`` are derived: every row follows from
audited facts (the runs table and the audit events, both covered by the keyed
chain), so :func:`suture.trust_store.rebuild` can drop and recompute them.
``trust_overrides`` and ``trust_exceptions`` are people's (and, for demotions,
suture's) decisions; each change is audited in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from suture.tables import Base, UTCDateTime


class TrackRecordRow(Base):
    """The counts of one (policy, action, signature), as :class:`policies.trust.TrackRecord` JSON."""

    __tablename__ = "trust_records"

    policy: Mapped[str] = mapped_column(String(255), primary_key=True)
    action: Mapped[str] = mapped_column(String(64), primary_key=True)
    signature: Mapped[str] = mapped_column(String(767), primary_key=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class IncidentSignatureRow(Base):
    """One run's incident signature and how it ended: the store nearest incidents are found in."""

    __tablename__ = "incident_signatures"
    __table_args__ = (Index("ix_incident_signatures_alert", "alert"),)

    workflow_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    loop: Mapped[str] = mapped_column(String(32))
    policy: Mapped[str] = mapped_column(String(255))
    alert: Mapped[str] = mapped_column(String(255))
    service: Mapped[str] = mapped_column(String(512))
    change: Mapped[str] = mapped_column(String(255))
    diagnosis: Mapped[str] = mapped_column(String(255))
    signature: Mapped[str] = mapped_column(String(767))
    actions: Mapped[list[str]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(32))
    resolution: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TrustOverrideRow(Base):
    """The mode an action class of a policy runs at instead of the policy's own (promoted or demoted)."""

    __tablename__ = "trust_overrides"

    policy: Mapped[str] = mapped_column(String(255), primary_key=True)
    action: Mapped[str] = mapped_column(String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(String(32))
    by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class TrustExceptionRow(Base):
    """A target exempt from actions (its runs escalate instead) until ``until``."""

    __tablename__ = "trust_exceptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(512))
    by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    removed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)

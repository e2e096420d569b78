"""Initial audit store: hash-chained audit events, runs, per-target locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# BIGINT keys do not alias SQLite's rowid, so they would not autoincrement there.
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", EVENT_ID, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("loop", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.UniqueConstraint("workflow_id", "seq", name="uq_audit_events_workflow_seq"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    chain = op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_event_id", EVENT_ID, nullable=True),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(chain, [{"id": 1, "last_event_id": None, "hash": GENESIS}])
    op.create_table(
        "runs",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("loop", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(32), nullable=True),
        sa.Column("policy", sa.String(255), nullable=True),
        sa.Column("policy_version", sa.String(64), nullable=True),
        sa.Column("verdict", sa.String(32), nullable=True),
        *(
            sa.Column(name, sa.DateTime(timezone=True), nullable=True)
            for name in ("detected", "decided", "approved", "acted", "verified", "closed", "received_at")
        ),
        sa.Column("human_touched", sa.Boolean(), nullable=False),
        sa.Column("approver", sa.String(255), nullable=True),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("briefing", sa.JSON(), nullable=True),
    )
    op.create_index("ix_runs_loop_closed", "runs", ["loop", "closed"])
    op.create_table(
        "target_locks",
        sa.Column("target", sa.String(512), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_action_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("target_locks")
    op.drop_index("ix_runs_loop_closed", table_name="runs")
    op.drop_table("runs")
    op.drop_table("audit_chain")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")

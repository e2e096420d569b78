"""Earned trust: track records, incident signatures, mode overrides and time-bound exceptions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trust_records",
        sa.Column("policy", sa.String(255), primary_key=True),
        sa.Column("action", sa.String(64), primary_key=True),
        sa.Column("signature", sa.String(767), primary_key=True),
        sa.Column("record", sa.JSON(), nullable=False),
    )
    op.create_table(
        "incident_signatures",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("loop", sa.String(32), nullable=False),
        sa.Column("policy", sa.String(255), nullable=False),
        sa.Column("alert", sa.String(255), nullable=False),
        sa.Column("service", sa.String(512), nullable=False),
        sa.Column("change", sa.String(255), nullable=False),
        sa.Column("diagnosis", sa.String(255), nullable=False),
        sa.Column("signature", sa.String(767), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_incident_signatures_alert", "incident_signatures", ["alert"])
    op.create_table(
        "trust_overrides",
        sa.Column("policy", sa.String(255), primary_key=True),
        sa.Column("action", sa.String(64), primary_key=True),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "trust_exceptions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_by", sa.String(255), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("trust_exceptions")
    op.drop_table("trust_overrides")
    op.drop_index("ix_incident_signatures_alert", table_name="incident_signatures")
    op.drop_table("incident_signatures")
    op.drop_table("trust_records")

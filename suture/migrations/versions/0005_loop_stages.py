"""Activation stages: one row per loop naming how far it may write, since when, set by whom.

A loop with no row is at the store's default stage (``read_only`` unless the
process says otherwise). Every change is audited in the same transaction.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loop_stages",
        sa.Column("loop", sa.String(32), primary_key=True),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("loop_stages")

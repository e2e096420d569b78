"""Keyed audit chain: an HMAC per event, a counted and signed head.

Events already recorded keep ``mac`` NULL: they were written before the audit key
existed. The first process that opens the store with a key records where keying
began (``keyed_from``), signs the head and seals every runs row into the chain;
``suture audit verify`` then reports the older events as unkeyed legacy rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as events:
        events.add_column(sa.Column("mac", sa.String(64), nullable=True))
    with op.batch_alter_table("audit_chain") as chain:
        chain.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
        chain.add_column(sa.Column("key_id", sa.String(16), nullable=True))
        chain.add_column(sa.Column("keyed_from", sa.Integer(), nullable=True))
        chain.add_column(sa.Column("mac", sa.String(64), nullable=True))
    op.execute("UPDATE audit_chain SET seq = (SELECT count(*) FROM audit_events)")


def downgrade() -> None:
    with op.batch_alter_table("audit_chain") as chain:
        for column in ("mac", "keyed_from", "key_id", "seq"):
            chain.drop_column(column)
    with op.batch_alter_table("audit_events") as events:
        events.drop_column("mac")

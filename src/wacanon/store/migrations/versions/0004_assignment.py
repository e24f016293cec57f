"""Assignment: the SKM directory, round robin's cursor, per conversation its
assignment count, last SKM and place in the waiting queue, and an index of events by
SKM (the score).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "skms",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("shopper_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("wa_ids", sa.Text(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("config_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_skms_shopper_id", "skms", ["shopper_id"])
    # The SKM score reads an SKM's events by time.
    op.create_index("ix_events_skm_id_occurred_at", "events", ["skm_id", "occurred_at"])
    op.create_table(
        "assignment_cursors",
        sa.Column("shopper_id", sa.Text(), nullable=False),
        sa.Column("skm_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("shopper_id"),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("assignments", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("last_skm_id", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_conversations_shopper_id_status_skm_id", ["shopper_id", "status", "skm_id"]
        )
        batch_op.create_index(
            "ix_conversations_waiting",
            ["shopper_id", "waiting_since"],
            sqlite_where=sa.text("waiting_since IS NOT NULL"),
            postgresql_where=sa.text("waiting_since IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_conversations_waiting",
            sqlite_where=sa.text("waiting_since IS NOT NULL"),
            postgresql_where=sa.text("waiting_since IS NOT NULL"),
        )
        batch_op.drop_index("ix_conversations_shopper_id_status_skm_id")
        batch_op.drop_column("assigned_at")
        batch_op.drop_column("waiting_since")
        batch_op.drop_column("last_skm_id")
        batch_op.drop_column("assignments")
    op.drop_table("assignment_cursors")
    op.drop_index("ix_events_skm_id_occurred_at", table_name="events")
    op.drop_index("ix_skms_shopper_id", table_name="skms")
    op.drop_table("skms")

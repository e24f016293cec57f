"""Console: ``node_windows`` holds each serving process's last five minutes of webhooks,
so the operator's console adds up every node's live figures.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 07:00:00
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
        "node_windows",
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_node_windows")),
    )


def downgrade() -> None:
    op.drop_table("node_windows")

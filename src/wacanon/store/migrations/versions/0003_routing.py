"""Routing: conversations, the identity graph, participants, the message index, and the
events' routing progress (``routed_seq`` and the index of events not routed yet).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 03:02:04.127785
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("thread_key", sa.Text(), nullable=False),
        sa.Column("shopper_id", sa.Text(), nullable=False),
        sa.Column("chat_type", sa.String(length=16), nullable=False),
        sa.Column("chat_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=16), nullable=True),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_inbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("skm_id", sa.Text(), nullable=True),
        sa.Column("merged_into", sa.String(length=36), nullable=True),
        sa.Column("opens", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.UniqueConstraint("thread_key", name=op.f("uq_conversations_thread_key")),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversations_shopper_id_customer_id", ["shopper_id", "customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_conversations_shopper_id_last_event_at",
            ["shopper_id", "last_event_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_conversations_status_last_message_at", ["status", "last_message_at"], unique=False
        )

    op.create_table(
        "identities",
        sa.Column("shopper_id", sa.Text(), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shopper_id", "identity", name=op.f("pk_identities")),
    )
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.create_index(
            "ix_identities_shopper_id_customer_id", ["shopper_id", "customer_id"], unique=False
        )

    op.create_table(
        "message_waiters",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("event_row_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "provider", "account_id", "message_id", "event_row_id", name=op.f("pk_message_waiters")
        ),
    )
    op.create_table(
        "messages",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=True),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("provider", "account_id", "message_id", name=op.f("pk_messages")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_conversation_id_occurred_at",
            ["conversation_id", "occurred_at"],
            unique=False,
        )

    op.create_table(
        "participants",
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("person_id", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("wa_id", sa.Text(), nullable=True),
        sa.Column("lid", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("conversation_id", "person_id", name=op.f("pk_participants")),
    )
    op.create_table(
        "routing_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_routing_state")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("routed_seq", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_events_conversation_id_occurred_at",
            ["conversation_id", "occurred_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_events_unrouted",
            ["id"],
            unique=False,
            sqlite_where=sa.text("routed_seq IS NULL"),
            postgresql_where=sa.text("routed_seq IS NULL"),
        )
        batch_op.create_index(
            "ix_events_passed_over",
            ["shopper_id"],
            unique=False,
            sqlite_where=sa.text("routed_seq = 0"),
            postgresql_where=sa.text("routed_seq = 0"),
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_events_passed_over",
            sqlite_where=sa.text("routed_seq = 0"),
            postgresql_where=sa.text("routed_seq = 0"),
        )
        batch_op.drop_index(
            "ix_events_unrouted",
            sqlite_where=sa.text("routed_seq IS NULL"),
            postgresql_where=sa.text("routed_seq IS NULL"),
        )
        batch_op.drop_index("ix_events_conversation_id_occurred_at")
        batch_op.drop_column("routed_seq")

    op.drop_table("routing_state")
    op.drop_table("participants")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_conversation_id_occurred_at")

    op.drop_table("messages")
    op.drop_table("message_waiters")
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_index("ix_identities_shopper_id_customer_id")

    op.drop_table("identities")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_status_last_message_at")
        batch_op.drop_index("ix_conversations_shopper_id_last_event_at")
        batch_op.drop_index("ix_conversations_shopper_id_customer_id")

    op.drop_table("conversations")

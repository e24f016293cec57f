"""The database tables (SQLAlchemy Core), the single source of the schema migrations create.

Events are deduplicated by the unique ``idempotency_key`` — a constraint, never a
check-then-insert — and the journal keeps every received webhook's raw body, so any
webhook can be replayed after a fix or a rollback.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: An auto-incrementing 64-bit key (SQLite only autoincrements INTEGER PRIMARY KEY).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)

webhook_journal = sa.Table(
    "webhook_journal",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("correlation_id", sa.String(64), nullable=False, unique=True),
    sa.Column("received_at", When, nullable=False, index=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("path_event", sa.Text),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("signature_valid", sa.Boolean, nullable=False),
    # Secret values (Evolution's ``apikey``) were replaced in ``body`` before anything was
    # kept; ``body_sha256`` is the digest of the body as kept.
    sa.Column("body_masked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("account_id", sa.Text),
    sa.Column("shopper_id", sa.Text),
    sa.Column("events_new", sa.Integer, nullable=False, server_default="0"),
    sa.Column("duplicates", sa.Integer, nullable=False, server_default="0"),
    sa.Column("ignored", sa.Integer, nullable=False, server_default="0"),
    sa.Column("errors", sa.Integer, nullable=False, server_default="0"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("schema_version", sa.String(8), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("occurred_at", When, nullable=False, index=True),
    sa.Column("received_at", When, nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("account_id", sa.Text, nullable=False),
    sa.Column("provider_event", sa.Text, nullable=False),
    sa.Column("provider_message_id", sa.Text, index=True),
    sa.Column("shopper_id", sa.Text),
    sa.Column("skm_id", sa.Text),
    sa.Column("conversation_id", sa.Text),
    sa.Column("thread_key", sa.Text, index=True),
    sa.Column("actor_wa_id", sa.Text),
    sa.Column("actor_role", sa.String(16), nullable=False),
    sa.Column("chat_type", sa.String(16), nullable=False),
    sa.Column("chat_id", sa.Text, nullable=False),
    sa.Column("message_type", sa.Text),
    sa.Column("status_value", sa.String(16)),
    sa.Column("correlation_id", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_events_event_type_occurred_at", "event_type", "occurred_at"),
    sa.Index("ix_events_shopper_id_occurred_at", "shopper_id", "occurred_at"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("created_at", When, nullable=False, index=True),
    sa.Column("correlation_id", sa.String(64), nullable=False, index=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("replayed_at", When),
)

flag_overrides = sa.Table(
    "flag_overrides",
    metadata,
    sa.Column("shopper_id", sa.Text, primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", When, nullable=False),
)

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
    # Routing's progress: NULL = not routed yet, 0 = passed over (routing off for its
    # shopper, or no shopper), n > 0 = the n-th event the projection applied.
    sa.Column("routed_seq", sa.BigInteger),
    sa.Index("ix_events_event_type_occurred_at", "event_type", "occurred_at"),
    sa.Index("ix_events_shopper_id_occurred_at", "shopper_id", "occurred_at"),
    sa.Index("ix_events_conversation_id_occurred_at", "conversation_id", "occurred_at"),
    sa.Index("ix_events_skm_id_occurred_at", "skm_id", "occurred_at"),
    # The routing queue: only the events not routed yet are in this index.
    sa.Index(
        "ix_events_unrouted",
        "id",
        sqlite_where=sa.text("routed_seq IS NULL"),
        postgresql_where=sa.text("routed_seq IS NULL"),
    ),
    # Events passed over (routing off for their shopper when stored or routed).
    sa.Index(
        "ix_events_passed_over",
        "shopper_id",
        sqlite_where=sa.text("routed_seq = 0"),
        postgresql_where=sa.text("routed_seq = 0"),
    ),
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

# ------------------------------------------------------------------ routing (docs/routing.md)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("thread_key", sa.Text, nullable=False, unique=True),
    sa.Column("shopper_id", sa.Text, nullable=False),
    sa.Column("chat_type", sa.String(16), nullable=False),
    sa.Column("chat_id", sa.Text, nullable=False),
    # Private chats: the customer of the identity graph (``identities.customer_id``).
    sa.Column("customer_id", sa.Text),
    # Where it was last reached: lifecycle events name this provider and account.
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("account_id", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | closed | merged
    sa.Column("opened_at", When, nullable=False),
    sa.Column("closed_at", When),
    sa.Column("closed_by", sa.String(16)),  # inactivity | command
    sa.Column("last_event_at", When, nullable=False),
    sa.Column("last_message_at", When),
    sa.Column("first_inbound_at", When),
    sa.Column("last_inbound_at", When),
    sa.Column("last_outbound_at", When),
    sa.Column("first_response_at", When),
    sa.Column("skm_id", sa.Text),
    sa.Column("merged_into", sa.String(36)),
    sa.Column("opens", sa.Integer, nullable=False, server_default="1"),
    # Assignment (docs/assignment.md): how many times it was assigned (keys the n-th
    # ``thread.assigned``), the last SKM it ever had, and since when it waits for one.
    sa.Column("assignments", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_skm_id", sa.Text),
    sa.Column("waiting_since", When),
    #: When its current SKM got it (``reassign_unanswered_minutes`` counts from here).
    sa.Column("assigned_at", When),
    sa.Index("ix_conversations_shopper_id_last_event_at", "shopper_id", "last_event_at"),
    sa.Index("ix_conversations_shopper_id_status_skm_id", "shopper_id", "status", "skm_id"),
    sa.Index(
        "ix_conversations_waiting",
        "shopper_id",
        "waiting_since",
        sqlite_where=sa.text("waiting_since IS NOT NULL"),
        postgresql_where=sa.text("waiting_since IS NOT NULL"),
    ),
    sa.Index("ix_conversations_shopper_id_customer_id", "shopper_id", "customer_id"),
    sa.Index("ix_conversations_status_last_message_at", "status", "last_message_at"),
)

#: The identity graph: every id a customer reached a shopper under, and who that is.
identities = sa.Table(
    "identities",
    metadata,
    sa.Column("shopper_id", sa.Text, primary_key=True),
    sa.Column("identity", sa.Text, primary_key=True),  # 5511…, lid:…, bsuid:…
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("first_seen_at", When, nullable=False),
    sa.Index("ix_identities_shopper_id_customer_id", "shopper_id", "customer_id"),
)

participants = sa.Table(
    "participants",
    metadata,
    sa.Column("conversation_id", sa.String(36), primary_key=True),
    sa.Column("person_id", sa.Text, primary_key=True),  # the customer id in the graph
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("wa_id", sa.Text),
    sa.Column("lid", sa.Text),
    sa.Column("user_id", sa.Text),
    sa.Column("display_name", sa.Text),
    sa.Column("first_seen_at", When, nullable=False),
    sa.Column("last_seen_at", When, nullable=False),
    sa.Column("left_at", When),
)

#: The message index: a provider's message → its conversation and current status.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.Text, primary_key=True),
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("conversation_id", sa.String(36)),
    sa.Column("direction", sa.String(16)),
    sa.Column("type", sa.Text),
    sa.Column("occurred_at", When),
    sa.Column("status", sa.String(16)),
    sa.Column("status_at", When),
    sa.Index("ix_messages_conversation_id_occurred_at", "conversation_id", "occurred_at"),
)

#: Events whose chat is not in their payload, waiting for the message they act upon.
message_waiters = sa.Table(
    "message_waiters",
    metadata,
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.Text, primary_key=True),
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("event_row_id", sa.BigInteger, primary_key=True),
)

#: Named counters of the projection: ``routed_seq`` (the last sequence number given),
#: whose row also serializes projection batches across processes (each batch updates it
#: first).
routing_state = sa.Table(
    "routing_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)


# ------------------------------------------------------------------ assignment (docs/assignment.md)

#: The SKM directory: seeded from ``[[skms]]``, changed at runtime; ``config_hash`` is the
#: configuration entry last applied (the config wins again only when it changes).
skms = sa.Table(
    "skms",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("shopper_id", sa.Text, nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("wa_ids", sa.Text, nullable=False),  # JSON list, graph spellings
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("last_assigned_at", When),
    sa.Column("config_hash", sa.String(64)),
    sa.Column("created_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
)

#: ``round_robin``'s persistent cursor: the SKM a shopper's last turn went to.
assignment_cursors = sa.Table(
    "assignment_cursors",
    metadata,
    sa.Column("shopper_id", sa.Text, primary_key=True),
    sa.Column("skm_id", sa.Text, nullable=False),
)


# ------------------------------------------------------------------ rollout (docs/rollout.md)

#: Each ``wacanon rollback``: its scope (a shopper, or ``*`` for every shopper), when it
#: took effect, the override values it replaced (JSON ``{name: value or null}``, null: no
#: override was there) and, once ``wacanon rollout resume`` restored them, when.
rollbacks = sa.Table(
    "rollbacks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("started_at", When, nullable=False),
    sa.Column("replaced", sa.Text, nullable=False),
    sa.Column("resumed_at", When),
    sa.Column("resumed_counts", sa.Text),  # JSON: what the resume's replay did
)

# Each serving process's last five minutes of webhooks (wacanon.ingest.window counts),
# published every few seconds, so the console shows every node's live figures at once.
node_windows = sa.Table(
    "node_windows",
    metadata,
    sa.Column("node", sa.Text, primary_key=True),  # host and pid
    sa.Column("updated_at", When, nullable=False),
    sa.Column("counts", sa.Text, nullable=False),  # JSON of the window's counts
)

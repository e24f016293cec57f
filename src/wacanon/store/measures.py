"""The store's own figures for ``/metrics`` and ``wacanon rollout check``: table sizes,
disk use, the waiting queue, and whether any message was stored as two rows.

Cheap enough to run every 30 s on a large database: PostgreSQL's row counts are the
planner's estimates (``pg_class.reltuples``; exact only for a table never analyzed), the
stored-twice figure looks at the latest rows by primary key, and the queue is read
through the conversations' ``waiting_since``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from wacanon.probe import PROBE
from wacanon.store.tables import conversations, events, webhook_journal

#: The tables whose sizes are reported, by the name the metric's label gives them.
SIZED = {"events": events, "conversations": conversations, "webhook_journal": webhook_journal}
#: The events one message gives once: two rows of these for one provider message id is
#: one fact stored twice.
FACT_TYPES = ("whatsapp.message.inbound", "whatsapp.message.outbound")
LATEST_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class StoreFigures:
    rows: dict[str, int]
    database_bytes: int | None  # None: the caller measures it (SQLite: the file)
    waiting: int
    oldest_wait_seconds: float
    stored_twice: int
    checked: int


def measure(connection: sa.Connection, now: datetime | None = None) -> StoreFigures:
    moment = now or datetime.now(UTC)
    waiting, oldest = queue(connection, moment)
    twice, checked = stored_twice(connection, latest=LATEST_EVENTS)
    return StoreFigures(
        rows=row_counts(connection),
        database_bytes=database_bytes(connection),
        waiting=waiting,
        oldest_wait_seconds=oldest,
        stored_twice=twice,
        checked=checked,
    )


def row_counts(connection: sa.Connection) -> dict[str, int]:
    return {label: estimated_rows(connection, table) for label, table in SIZED.items()}


def estimated_rows(connection: sa.Connection, table: sa.Table) -> int:
    """PostgreSQL: the planner's estimate (``pg_class.reltuples``), exact only for a
    table never analyzed, which is counted; SQLite: counted."""
    estimate = -1
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            sa.text(
                "SELECT reltuples::bigint FROM pg_class WHERE relkind = 'r' AND relname = :name"
            ),
            {"name": table.name},
        ).scalar()
        estimate = -1 if found is None else int(found)
    if estimate < 0:  # never analyzed (or SQLite): count it
        estimate = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    return int(estimate)


def database_bytes(connection: sa.Connection) -> int | None:
    if connection.dialect.name != "postgresql":
        return None
    return int(
        connection.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
    )


def queue(connection: sa.Connection, now: datetime) -> tuple[int, float]:
    """How many conversations wait for an SKM, and the longest wait in seconds."""
    c = conversations.c
    count, oldest = connection.execute(
        sa.select(sa.func.count(), sa.func.min(c.waiting_since)).where(
            c.waiting_since.is_not(None), c.status == "open", c.shopper_id != PROBE
        )
    ).one()
    if not count or oldest is None:
        return 0, 0.0
    since = oldest.replace(tzinfo=UTC) if oldest.tzinfo is None else oldest
    return int(count), max(0.0, (now - since).total_seconds())


def _facts(connection: sa.Connection, since: datetime | None, latest: int | None) -> sa.Select[Any]:
    """The message events among those received since ``since`` or the ``latest`` by id."""
    e = events.c
    scope: list[sa.ColumnElement[bool]] = [
        e.event_type.in_(FACT_TYPES),
        e.provider_message_id.is_not(None),
    ]
    if since is not None:
        scope.append(e.received_at >= since)
    if latest is not None:
        top = connection.execute(sa.select(sa.func.max(e.id))).scalar_one() or 0
        scope.append(e.id > top - latest)
    return sa.select(e.provider, e.account_id, e.event_type, e.provider_message_id).where(*scope)


def _twice(recent: sa.Select[Any]) -> sa.Select[Any]:
    e = events.c
    return recent.group_by(e.provider, e.account_id, e.event_type, e.provider_message_id).having(
        sa.func.count() > 1
    )


def stored_twice(
    connection: sa.Connection, *, since: datetime | None = None, latest: int | None = None
) -> tuple[int, int]:
    """(messages stored as two or more rows, rows looked at): among events received since
    ``since``, or among the ``latest`` rows by id."""
    recent = _facts(connection, since, latest)
    checked = connection.execute(
        sa.select(sa.func.count()).select_from(recent.subquery())
    ).scalar_one()
    grouped = _twice(recent).subquery()
    twice = connection.execute(sa.select(sa.func.count()).select_from(grouped)).scalar_one()
    return int(twice), int(checked)


def stored_twice_examples(
    connection: sa.Connection, *, latest: int, limit: int = 3
) -> list[tuple[str, str, str]]:
    """Up to ``limit`` messages stored twice among the ``latest`` events: (provider,
    account, provider message id), for an operator to look up."""
    rows = connection.execute(_twice(_facts(connection, None, latest)).limit(limit)).all()
    return [(r.provider, r.account_id, r.provider_message_id) for r in rows]

"""What the operator's console shows from the database: every node's figures at once
(the events stored, the SKMs' open conversations, who waits, the latest events and dead
letters), read in one short read-only transaction.

Probes (:mod:`wacanon.probe`) are left out of every figure, as they are of ``/metrics``:
``rollout check`` writes and removes them, and an operator must not see them come and
go. Ids, types and error paths only — no message text — as at INFO in the logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from wacanon.probe import PROBE
from wacanon.store.assignment import list_skms
from wacanon.store.conversation_reads import iso
from wacanon.store.measures import estimated_rows
from wacanon.store.tables import conversations, dead_letters, events, webhook_journal

LATEST = 15
#: Past this many rows (by the planner's estimate), PostgreSQL's events are estimated.
EXACT_UP_TO = 200_000
#: An error longer than this is cut (the whole of it is in the dead letter).
ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class ConsoleFigures:
    events: int
    events_estimated: bool  # a large PostgreSQL table: the planner's estimate
    open_conversations: int
    skms: list[dict[str, Any]]  # each: id, shopper_id, name, capacity, active, open
    waiting: dict[str, int]  # shopper → conversations waiting for an SKM
    latest_events: list[dict[str, Any]]
    latest_errors: list[dict[str, Any]]
    dead_letters_pending: int
    dead_letters: int


def _not_probe(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    return sa.or_(column.is_(None), column != PROBE)


def _probe_letters() -> sa.ColumnElement[bool]:
    """Dead letters of probe webhooks (their journal rows name the probe shopper)."""
    probes = sa.select(webhook_journal.c.correlation_id).where(
        webhook_journal.c.shopper_id == PROBE
    )
    return dead_letters.c.correlation_id.in_(probes)


def _events_stored(connection: sa.Connection) -> tuple[int, bool]:
    """Events, probes left out: exact, or on PostgreSQL past :data:`EXACT_UP_TO` rows the
    planner's estimate — an exact ``count(*)`` there reads the whole table at every
    refresh of every open console."""
    count = sa.select(sa.func.count()).select_from(events)
    probes = connection.execute(count.where(events.c.shopper_id == PROBE)).scalar_one()
    if connection.dialect.name == "postgresql":
        estimate = estimated_rows(connection, events)  # events only, not every sized table
        if estimate > EXACT_UP_TO:
            return max(0, estimate - int(probes)), True
    return int(connection.execute(count).scalar_one()) - int(probes), False


def console_figures(connection: sa.Connection) -> ConsoleFigures:
    """Every figure in one read-only transaction (PostgreSQL: one snapshot, so they agree
    with each other)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    e, c, d = events.c, conversations.c, dead_letters.c
    count = sa.select(sa.func.count())
    stored, estimated = _events_stored(connection)
    open_now = connection.execute(
        count.select_from(conversations).where(c.status == "open", c.shopper_id != PROBE)
    ).scalar_one()
    skms = [s for s in list_skms(connection, None) if s["shopper_id"] != PROBE]
    waiting: dict[str, int] = {
        str(shopper): int(n)
        for shopper, n in connection.execute(
            sa.select(c.shopper_id, sa.func.count())
            .where(c.waiting_since.is_not(None), c.status == "open", c.shopper_id != PROBE)
            .group_by(c.shopper_id)
            .order_by(c.shopper_id)
        )
    }
    latest = connection.execute(
        sa.select(
            e.id,
            e.received_at,
            e.provider,
            e.shopper_id,
            e.event_type,
            e.conversation_id,
            e.skm_id,
        )
        .where(_not_probe(e.shopper_id))
        .order_by(e.id.desc())
        .limit(LATEST)
    ).all()
    real = ~_probe_letters()
    errors = connection.execute(
        sa.select(d.id, d.created_at, d.provider, d.kind, d.error, d.replayed_at)
        .where(real)
        .order_by(d.id.desc())
        .limit(LATEST)
    ).all()
    pending = connection.execute(
        count.select_from(dead_letters).where(d.replayed_at.is_(None), real)
    ).scalar_one()
    total = connection.execute(count.select_from(dead_letters).where(real)).scalar_one()
    return ConsoleFigures(
        events=stored,
        events_estimated=estimated,
        open_conversations=int(open_now),
        skms=skms,
        waiting=waiting,
        latest_events=[
            {
                "id": row.id,
                "received_at": iso(row.received_at),
                "provider": row.provider,
                "shopper_id": row.shopper_id,
                "event_type": row.event_type,
                "conversation_id": row.conversation_id,
                "skm_id": row.skm_id,
            }
            for row in latest
        ],
        latest_errors=[
            {
                "id": row.id,
                "created_at": iso(row.created_at),
                "provider": row.provider,
                "kind": row.kind,
                "error": _cut(row.error),
                "replayed": row.replayed_at is not None,
            }
            for row in errors
        ],
        dead_letters_pending=int(pending),
        dead_letters=int(total),
    )


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"

"""What the SKM score needs from the database, for one SKM and a window of time; the
arithmetic is :mod:`wacanon.routing.score`.

An SKM's messages are the outbound messages routed while their conversation was theirs
(``events.skm_id`` is written when the event is routed, so it is the SKM of that moment),
those from an account bound to them, and their own messages in groups (``actor_role``
``skm``). The window (``since`` ≤ t < ``until``) applies to when the message was sent,
when a business event happened, when a conversation closed and when its customer first
wrote; ``open``, ``waiting`` and ``unanswered`` are as of now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from wacanon.canonical.schema import BUSINESS_EVENT_TYPES
from wacanon.canonical.times import as_utc
from wacanon.routing.score import Facts, Score, score
from wacanon.store.tables import conversations, events

OUTBOUND = "whatsapp.message.outbound"
INBOUND = "whatsapp.message.inbound"


def _window(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    out = []
    if since is not None:
        out.append(column >= since)
    if until is not None:
        out.append(column < until)
    return out


def _statuses(
    connection: sa.Connection, skm_id: str, since: datetime | None, until: datetime | None
) -> list[tuple[tuple[str, str, str], str]]:
    m = events.alias("m")
    s = events.alias("s")
    theirs = sa.or_(
        m.c.event_type == OUTBOUND, sa.and_(m.c.event_type == INBOUND, m.c.actor_role == "skm")
    )
    mine = (
        sa.select(m.c.provider, m.c.account_id, m.c.provider_message_id)
        .where(m.c.skm_id == skm_id, theirs, *_window(m.c.occurred_at, since, until))
        .distinct()
        .subquery()
    )
    query = (
        sa.select(s.c.provider, s.c.account_id, s.c.provider_message_id, s.c.status_value)
        .join(
            mine,
            sa.and_(
                s.c.provider == mine.c.provider,
                s.c.account_id == mine.c.account_id,
                s.c.provider_message_id == mine.c.provider_message_id,
            ),
        )
        .where(s.c.status_value.is_not(None))
        .order_by(s.c.occurred_at, s.c.id)
    )
    return [((p, a, i), str(v)) for p, a, i, v in connection.execute(query)]


def facts_of(
    connection: sa.Connection, skm_id: str, since: datetime | None, until: datetime | None
) -> Facts:
    e, c = events.c, conversations.c
    business = [
        str(t)
        for (t,) in connection.execute(
            sa.select(e.event_type).where(
                e.skm_id == skm_id,
                e.event_type.in_(sorted(BUSINESS_EVENT_TYPES)),
                *_window(e.occurred_at, since, until),
            )
        )
    ]
    counts = sa.select(
        sa.func.count().filter(c.status == "open"),
        sa.func.count().filter(c.status == "closed", *_window(c.closed_at, since, until)),
        sa.func.count().filter(
            c.status == "open",
            c.last_inbound_at.is_not(None),
            sa.or_(c.last_outbound_at.is_(None), c.last_inbound_at > c.last_outbound_at),
        ),
    ).where(c.skm_id == skm_id)
    open_, closed, unanswered = connection.execute(counts).one()
    waiting = connection.execute(
        sa.select(sa.func.count()).where(
            c.last_skm_id == skm_id, c.skm_id.is_(None), c.waiting_since.is_not(None)
        )
    ).scalar_one()
    firsts = connection.execute(
        sa.select(c.first_inbound_at, c.first_response_at).where(
            c.skm_id == skm_id,
            c.first_inbound_at.is_not(None),
            c.first_response_at.is_not(None),
            *_window(c.first_inbound_at, since, until),
        )
    )
    responses = [(as_utc(r) - as_utc(i)).total_seconds() for i, r in firsts]
    return Facts(
        skm_id=skm_id,
        statuses=_statuses(connection, skm_id, since, until),
        business=business,
        open=int(open_),
        closed=int(closed),
        waiting=int(waiting),
        first_responses=responses,
        unanswered=int(unanswered),
    )


def skm_score(
    connection: sa.Connection,
    skm_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Score:
    return score(facts_of(connection, skm_id, since, until))

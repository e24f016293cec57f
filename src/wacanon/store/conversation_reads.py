"""Reading conversations back: the queries behind ``wacanon conversations`` and the API.

Pages are keyset-paginated (no OFFSET): the cursor names the last item of a page, so a
page stays correct while routing adds conversations.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from wacanon.canonical.times import as_utc
from wacanon.routing.threads import identity_of_wa_id
from wacanon.store.tables import conversations, events, identities, messages, participants

_TIMES = (
    "opened_at",
    "closed_at",
    "last_event_at",
    "last_inbound_at",
    "last_outbound_at",
    "first_response_at",
    "waiting_since",
)


class BadCursor(ValueError):
    """A cursor this server did not give out."""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def iso(value: datetime | None) -> str | None:
    """A stored time as the API writes it (``2026-03-01T09:00:00Z``); SQLite gives naive UTC."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def _encode(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def _decode(cursor: str, *kinds: type) -> list[Any]:
    """A cursor's parts, each of the type given (a forged one is :class:`BadCursor`, never
    a value that reaches SQL)."""
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise BadCursor(cursor) from None
    if not isinstance(parts, list) or len(parts) != len(kinds):
        raise BadCursor(cursor)
    if not all(type(part) is kind for part, kind in zip(parts, kinds, strict=True)):
        raise BadCursor(cursor)
    return parts


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadCursor(text) from None


def conversation_dict(connection: sa.Connection, row: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": row.id,
        "thread_key": row.thread_key,
        "shopper_id": row.shopper_id,
        "chat_type": row.chat_type,
        "chat_id": row.chat_id,
        "status": row.status,
        "skm_id": row.skm_id,
    }
    item.update({name: iso(getattr(row, name)) for name in _TIMES})
    if row.merged_into is not None:
        item["merged_into"] = row.merged_into
    item["identities"] = _identities(connection, row)
    return item


def _identities(connection: sa.Connection, row: Any) -> dict[str, str | None]:
    found: dict[str, str | None] = {"wa_id": None, "lid": None, "user_id": None}
    if row.customer_id is None:
        return found
    for identity in customer_identity_list(connection, row.shopper_id, row.customer_id):
        if identity.startswith("lid:"):
            found["lid"] = found["lid"] or identity[4:]
        elif identity.startswith("bsuid:"):
            found["user_id"] = found["user_id"] or identity[6:]
        else:
            found["wa_id"] = found["wa_id"] or identity
    if found["wa_id"] is None:  # the spec's wa_id: phone, else lid:…, else bsuid:…
        if found["lid"]:
            found["wa_id"] = f"lid:{found['lid']}"
        elif found["user_id"]:
            found["wa_id"] = f"bsuid:{found['user_id']}"
    return found


def customer_identity_list(connection: sa.Connection, shopper: str, customer: str) -> list[str]:
    return [str(row.identity) for row in connection.execute(_linked(shopper, customer))]


def list_conversations(
    connection: sa.Connection,
    *,
    shopper_id: str | None = None,
    shoppers: frozenset[str] | None = None,
    status: str | None = None,
    chat_type: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """Newest activity first; merged conversations are left out (their events moved)."""
    c = conversations.c
    query = sa.select(conversations).where(c.status != "merged")
    if shopper_id is not None:
        query = query.where(c.shopper_id == shopper_id)
    if shoppers is not None:
        query = query.where(c.shopper_id.in_(sorted(shoppers)))
    if status is not None:
        query = query.where(c.status == status)
    if chat_type is not None:
        query = query.where(c.chat_type == chat_type)
    if since is not None:
        query = query.where(c.last_event_at >= since)
    if cursor is not None:
        last_at, last_id = _decode(cursor, str, str)
        at = _time(last_at)
        query = query.where(
            sa.or_(c.last_event_at < at, sa.and_(c.last_event_at == at, c.id < last_id))
        )
    rows = list(
        connection.execute(query.order_by(c.last_event_at.desc(), c.id.desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = [conversation_dict(connection, r) for r in rows]
    next_cursor = _encode(_utc_text(rows[-1].last_event_at), rows[-1].id) if more else None
    return Page(items, next_cursor)


def _utc_text(value: datetime) -> str:
    return as_utc(value).isoformat()


def count_conversations(connection: sa.Connection, shopper_id: str) -> int:
    """A shopper's conversations, merged ones left out."""
    query = sa.select(sa.func.count()).where(
        conversations.c.shopper_id == shopper_id, conversations.c.status != "merged"
    )
    return int(connection.execute(query).scalar_one())


def get_conversation(connection: sa.Connection, conversation_id: str) -> Any | None:
    query = sa.select(conversations).where(conversations.c.id == conversation_id)
    return connection.execute(query).first()


def resolve_conversation(
    connection: sa.Connection, conversation_id: str | None = None, thread_key: str | None = None
) -> Any | None:
    """The conversation named by id or thread key; one merged into another resolves to
    the survivor (merges may chain)."""
    if conversation_id is not None:
        row = get_conversation(connection, conversation_id)
    else:
        query = sa.select(conversations).where(conversations.c.thread_key == thread_key)
        row = connection.execute(query).first()
    for _ in range(64):
        if row is None or row.merged_into is None:
            return row
        row = get_conversation(connection, row.merged_into)
    return row


def participants_of(connection: sa.Connection, conversation_id: str) -> list[dict[str, Any]]:
    query = (
        sa.select(participants)
        .where(participants.c.conversation_id == conversation_id)
        .order_by(participants.c.first_seen_at, participants.c.person_id)
    )
    return [
        {
            "wa_id": p.wa_id,
            "lid": p.lid,
            "user_id": p.user_id,
            "role": p.role,
            "display_name": p.display_name,
            "first_seen_at": iso(p.first_seen_at),
            "last_seen_at": iso(p.last_seen_at),
            "left_at": iso(p.left_at),
        }
        for p in connection.execute(query)
    ]


def messages_of(
    connection: sa.Connection, conversation_id: str, cursor: str | None = None, limit: int = 100
) -> Page:
    """In the order they happened; a message known only by its status (sent through the
    API, or whose message has not arrived) takes its status's time."""
    m = messages.c
    at_ = sa.func.coalesce(m.occurred_at, m.status_at)
    query = sa.select(messages, at_.label("at")).where(m.conversation_id == conversation_id)
    if cursor is not None:
        last_at, last_id = _decode(cursor, str, str)
        at = _time(last_at)
        query = query.where(sa.or_(at_ > at, sa.and_(at_ == at, m.message_id > last_id)))
    rows = list(connection.execute(query.order_by(at_, m.message_id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "message_id": r.message_id,
            "direction": r.direction,
            "type": r.type,
            "occurred_at": iso(r.occurred_at),
            "status": r.status,
        }
        for r in rows
    ]
    next_cursor = _encode(_utc_text(_as_time(rows[-1].at)), rows[-1].message_id) if more else None
    return Page(items, next_cursor)


def _as_time(value: Any) -> datetime:
    """``coalesce`` of two times: a datetime on PostgreSQL, the stored text on SQLite."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def event_json(row: Any) -> dict[str, Any]:
    """A stored event as the API returns it: the canonical JSON with the routing fields
    routing filled in afterwards (the payload keeps what normalization produced)."""
    event: dict[str, Any] = orjson.loads(row.payload)
    routing = event.setdefault("routing", {})
    routing["conversation_id"] = row.conversation_id
    routing["thread_key"] = row.thread_key
    if row.skm_id is not None:
        routing["skm_id"] = row.skm_id
    if row.actor_role == "skm":  # routing recognised one of the shopper's SKMs
        event.setdefault("actor", {})["role"] = "skm"
    return event


def assignments_of(connection: sa.Connection, conversation_id: str) -> list[dict[str, Any]]:
    """The conversation's ``whatsapp.thread.assigned`` events as its assignment history,
    oldest first."""
    e = events.c
    query = (
        sa.select(e.payload)
        .where(e.conversation_id == conversation_id, e.event_type == "whatsapp.thread.assigned")
        .order_by(e.occurred_at, e.id)
    )
    return [orjson.loads(payload)["assignment"] for (payload,) in connection.execute(query)]


def events_of(
    connection: sa.Connection, conversation_id: str, cursor: str | None = None, limit: int = 100
) -> Page:
    e = events.c
    query = sa.select(
        e.id, e.occurred_at, e.payload, e.conversation_id, e.thread_key, e.skm_id, e.actor_role
    )
    query = query.where(e.conversation_id == conversation_id)
    if cursor is not None:
        last_at, last_id = _decode(cursor, str, int)
        at = _time(last_at)
        query = query.where(
            sa.or_(e.occurred_at > at, sa.and_(e.occurred_at == at, e.id > last_id))
        )
    rows = list(connection.execute(query.order_by(e.occurred_at, e.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode(_utc_text(rows[-1].occurred_at), rows[-1].id) if more else None
    return Page([event_json(r) for r in rows], next_cursor)


def list_events(
    connection: sa.Connection,
    *,
    shoppers: frozenset[str] | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page:
    """Stored events in the order they were stored (the cursor is the row id)."""
    e = events.c
    query = sa.select(e.id, e.payload, e.conversation_id, e.thread_key, e.skm_id, e.actor_role)
    if shoppers is not None:
        query = query.where(e.shopper_id.in_(sorted(shoppers)))
    if event_type is not None:
        query = query.where(e.event_type == event_type)
    if since is not None:
        query = query.where(e.occurred_at >= since)
    if cursor is not None:
        (last_id,) = _decode(cursor, int)
        query = query.where(e.id > last_id)
    rows = list(connection.execute(query.order_by(e.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode(rows[-1].id) if more else None
    return Page([event_json(r) for r in rows], next_cursor)


def customer_of(connection: sa.Connection, shopper_id: str, wa_id: str) -> str | None:
    """The customer a customer id (phone written any way, ``lid:…``, ``bsuid:…``) names
    for this shopper, or None."""
    identity = identity_of_wa_id(wa_id)
    if identity is None:
        return None
    query = sa.select(identities.c.customer_id).where(
        identities.c.shopper_id == shopper_id, identities.c.identity == identity
    )
    found = connection.execute(query).scalar()
    return None if found is None else str(found)


def _linked(shopper_id: str, customer: str) -> sa.Select[Any]:
    """A customer's identities, first seen first."""
    return (
        sa.select(identities)
        .where(identities.c.shopper_id == shopper_id, identities.c.customer_id == customer)
        .order_by(identities.c.first_seen_at, identities.c.identity)
    )


def lookup(connection: sa.Connection, shopper_id: str, wa_id: str) -> Any | None:
    """The conversation a customer id resolves to (see :func:`customer_of`)."""
    customer = customer_of(connection, shopper_id, wa_id)
    if customer is None:
        return None
    query = sa.select(conversations).where(
        conversations.c.shopper_id == shopper_id,
        conversations.c.customer_id == customer,
        conversations.c.status != "merged",
    )
    return connection.execute(query).first()


def identity_links(connection: sa.Connection, shopper_id: str, wa_id: str) -> list[Any] | None:
    """Every id linked to this one for the shopper (first seen first), or None."""
    customer = customer_of(connection, shopper_id, wa_id)
    if customer is None:
        return None
    return list(connection.execute(_linked(shopper_id, customer)))

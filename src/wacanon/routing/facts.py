"""What routing reads of a stored event: the parts of the canonical JSON that decide its
conversation, typed once at this boundary (msgspec), so the projection works on plain
attributes and never on nested dictionaries."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec


class _Person(msgspec.Struct, frozen=True):
    wa_id: str | None = None
    lid: str | None = None
    user_id: str | None = None
    phone: str | None = None
    role: str | None = None
    display_name: str | None = None


class _Chat(msgspec.Struct, frozen=True):
    type: str
    id: str
    lid: str | None = None
    user_id: str | None = None
    phone: str | None = None


class _Source(msgspec.Struct, frozen=True):
    provider: str
    account_id: str
    provider_event: str | None = None


class _Routing(msgspec.Struct, frozen=True):
    shopper_id: str | None = None
    conversation_id: str | None = None


class _Reaction(msgspec.Struct, frozen=True):
    message_id: str | None = None


class _Message(msgspec.Struct, frozen=True):
    id: str | None = None
    direction: str | None = None
    type: str | None = None
    target_id: str | None = None
    reaction: _Reaction | None = None
    forwarded: bool = False
    mentions: list[str] = []


class _Status(msgspec.Struct, frozen=True):
    value: str
    message_id: str


class _Group(msgspec.Struct, frozen=True):
    id: str
    participants: list[str] = []


class _Contact(msgspec.Struct, frozen=True):
    wa_id: str | None = None
    lid: str | None = None
    user_id: str | None = None
    previous_wa_id: str | None = None
    previous_user_id: str | None = None


class _Conversation(msgspec.Struct, frozen=True):
    id: str
    reason: str


class _Assignment(msgspec.Struct, frozen=True):
    skm_id: str | None = None


class StoredEvent(msgspec.Struct, frozen=True):
    """The canonical event's routing-relevant fields (others are ignored when decoding)."""

    event_type: str
    occurred_at: datetime
    received_at: datetime
    idempotency_key: str
    source: _Source
    routing: _Routing
    actor: _Person
    chat: _Chat
    message: _Message | None = None
    status: _Status | None = None
    group: _Group | None = None
    contact: _Contact | None = None
    conversation: _Conversation | None = None
    assignment: _Assignment | None = None

    @property
    def target_message_id(self) -> str | None:
        """The message this event acts upon: a status's, a reaction's, an edit's or a
        delete's target — or, for a message, the message itself."""
        if self.status is not None:
            return self.status.message_id
        m = self.message
        if m is None:
            return None
        if m.reaction is not None and m.reaction.message_id:
            return m.reaction.message_id
        return m.target_id or m.id


_decode = msgspec.json.Decoder(StoredEvent).decode


def read_event(payload: str | bytes) -> StoredEvent:
    """Type one stored event's JSON; times come back as aware UTC datetimes."""
    event = _decode(payload)
    if event.occurred_at.tzinfo is None:
        return msgspec.structs.replace(event, occurred_at=event.occurred_at.replace(tzinfo=UTC))
    return event

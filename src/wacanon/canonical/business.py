"""Business events other systems record (``POST /v1/events``): ``commerce.*`` and
``delivery.*`` facts about a conversation, as canonical events.

Pure: the caller names the conversation (the store resolved it) and gives its own
idempotency key; the event's key is derived from the shopper and that key only, so the
same key sent twice is one event, whatever else the second request says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wacanon.canonical.ids import event_id, idempotency_key
from wacanon.canonical.schema import CanonicalEvent

#: ``source.provider_event`` of a recorded business event (an input: a rebuild replays it).
API_PROVIDER_EVENT = "wacanon.api.events"
#: What stands in the ``provider`` part of their idempotency keys.
API_KEY_PROVIDER = "api"


@dataclass(frozen=True, slots=True)
class ConversationRef:
    """The conversation a business event belongs to, as the store has it now."""

    id: str
    thread_key: str
    shopper_id: str
    skm_id: str | None
    chat_type: str
    chat_id: str
    provider: str
    account_id: str


def business_key(shopper_id: str, key: str) -> str:
    return idempotency_key(API_KEY_PROVIDER, shopper_id, "business", key)


def business_event(
    event_type: str,
    key: str,
    occurred_at: datetime,
    data: dict[str, Any],
    conversation: ConversationRef,
    received_at: datetime,
    correlation_id: str,
) -> CanonicalEvent:
    """The canonical event; raises ``pydantic.ValidationError`` for an unknown type."""
    c = conversation
    digest = business_key(c.shopper_id, key)
    return CanonicalEvent.model_validate(
        {
            "event_id": event_id(digest),
            "event_type": event_type,
            "occurred_at": occurred_at,
            "received_at": received_at,
            "idempotency_key": digest,
            "source": {
                "provider": c.provider,
                "account_id": c.account_id,
                "provider_event": API_PROVIDER_EVENT,
                "provider_message_id": None,
            },
            "routing": {
                "shopper_id": c.shopper_id,
                "skm_id": c.skm_id,
                "conversation_id": c.id,
                "thread_key": c.thread_key,
            },
            "actor": {"role": "system"},
            "chat": {"type": c.chat_type, "id": c.chat_id},
            "data": data,
            "security": {"signature_valid": True, "risk_flags": []},
            "trace": {"correlation_id": correlation_id},
        }
    )

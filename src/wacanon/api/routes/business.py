"""``POST /v1/events``: business events other systems record about a conversation
(``commerce.*``, ``delivery.*``), stored as canonical events with the conversation's
routing and weighed by the SKM score (``docs/assignment.md``).

The caller's ``idempotency_key`` is the event's identity within its shopper: the first
store answers 201 ``{"event_id", "duplicate": false}``, the same key again 200 with
``"duplicate": true`` and the same ``event_id``. The event is queued for routing like a
webhook's, so its ``routing.skm_id`` is the conversation's SKM at that moment and a
rebuild replays it where it was recorded.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from wacanon.api.deps import ServiceDep
from wacanon.api.replies import reply
from wacanon.api.routes.conversations import ApiError, ScopeDep
from wacanon.canonical.business import ConversationRef, business_event
from wacanon.canonical.schema import BusinessEventType
from wacanon.ingest.pipeline import event_row
from wacanon.store import conversation_reads as reads
from wacanon.store.repository import write_events

router = APIRouter(prefix="/v1", tags=["business events"])

#: A business event's ``data`` is a record of a fact, not a document store.
MAX_DATA_BYTES = 16 * 1024


class BusinessEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: BusinessEventType
    conversation_id: str | None = Field(default=None, min_length=1)
    thread_key: str | None = Field(default=None, min_length=1)
    idempotency_key: str = Field(min_length=1, max_length=256)
    occurred_at: AwareDatetime
    data: dict[str, Any] = Field(default_factory=dict)


@router.post("/events")
def record_event(service: ServiceDep, scope: ScopeDep, body: BusinessEventIn) -> Response:
    if (body.conversation_id is None) == (body.thread_key is None):
        raise ApiError(422, "conversation_id: give either conversation_id or thread_key")
    if len(orjson.dumps(body.data)) > MAX_DATA_BYTES:
        raise ApiError(422, f"data: larger than {MAX_DATA_BYTES} bytes as JSON")
    with service.engine.connect() as connection:
        row = reads.resolve_conversation(connection, body.conversation_id, body.thread_key)
    if row is None or not scope.sees(row.shopper_id):
        named = body.conversation_id or body.thread_key
        field = "conversation_id" if body.conversation_id else "thread_key"
        raise ApiError(404, f"{field}: no conversation {named!r}")
    event = business_event(
        body.event_type,
        body.idempotency_key,
        body.occurred_at,
        body.data,
        ConversationRef(
            id=row.id,
            thread_key=row.thread_key,
            shopper_id=row.shopper_id,
            skm_id=row.skm_id,
            chat_type=row.chat_type,
            chat_id=row.chat_id,
            provider=row.provider,
            account_id=row.account_id,
        ),
        received_at=datetime.now(UTC),
        correlation_id=uuid.uuid4().hex,
    )
    with service.engine.begin() as connection:
        new = write_events(connection, [event_row(event)])
    if new:
        service.routing.wake()
        return reply(201, {"event_id": event.event_id, "duplicate": False})
    return reply(200, {"event_id": event.event_id, "duplicate": True})

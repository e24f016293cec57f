"""The models serialize exactly as the contract says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from pydantic import ValidationError

from wacanon import CanonicalEvent, normalize

BODY = orjson.dumps(
    {
        "account": "sim-store-1",
        "events": [{"type": "message", "id": "m1", "from": "5511987654321", "text": "Olá 🌎"}],
    }
)


def test_times_are_rfc3339_utc_even_when_received_in_another_zone() -> None:
    brt = timezone(timedelta(hours=-3))
    (event,) = normalize(
        "simulated", BODY, received_at=datetime(2026, 3, 1, 9, 0, tzinfo=brt)
    ).events
    data = orjson.loads(event.model_dump_json())
    assert data["received_at"] == "2026-03-01T12:00:00Z"
    assert data["occurred_at"] == "2026-03-01T12:00:00Z"


def test_json_is_utf8_with_emoji_unescaped() -> None:
    (event,) = normalize("simulated", BODY, received_at=datetime(2026, 3, 1, tzinfo=UTC)).events
    assert "Olá 🌎" in event.model_dump_json()


def test_events_round_trip_through_json() -> None:
    (event,) = normalize("simulated", BODY).events
    again = CanonicalEvent.model_validate_json(event.model_dump_json())
    assert again == event


def test_unknown_fields_are_refused_when_reading_back() -> None:
    (event,) = normalize("simulated", BODY).events
    data = event.model_dump(mode="json")
    data["surprise"] = 1
    with pytest.raises(ValidationError):
        CanonicalEvent.model_validate(data)


def test_spec_paths_are_all_present() -> None:
    (event,) = normalize("simulated", BODY).events
    data = event.model_dump(mode="json")
    spec_paths = [
        "schema_version",
        "event_id",
        "event_type",
        "occurred_at",
        "received_at",
        "idempotency_key",
        "source.provider",
        "source.account_id",
        "source.provider_event",
        "source.provider_message_id",
        "routing.shopper_id",
        "routing.skm_id",
        "routing.conversation_id",
        "routing.thread_key",
        "actor.wa_id",
        "actor.lid",
        "actor.user_id",
        "actor.username",
        "actor.role",
        "actor.display_name",
        "chat.type",
        "chat.id",
        "message.id",
        "message.direction",
        "message.type",
        "message.text",
        "message.reply_to",
        "message.forwarded",
        "message.media",
        "message.location",
        "message.contacts",
        "message.interactive",
        "message.reaction",
        "message.target_id",
        "security.signature_valid",
        "security.risk_flags",
        "trace.correlation_id",
    ]
    for path in spec_paths:
        node = data
        for part in path.split("."):
            assert part in node, path
            node = node[part]
    assert data["schema_version"] == "1.0"

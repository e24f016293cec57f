"""Realistic routing inputs: Evolution API webhooks built from the fixtures' shapes, put
through the real normalizer, then read back the way the projection reads stored events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from wacanon import normalize
from wacanon.canonical.schema import CanonicalEvent
from wacanon.routing.facts import StoredEvent, read_event

FIXTURES = Path(__file__).parent.parent / "fixtures" / "evolution"
ACCOUNT = "loja-centro"
SHOPPER = "shop-1"
OWN = "5511988887777"  # the instance's own number (envelope ``sender``)
PHONE = "5511987654321"
LID = "103899771998284"
T0 = 1772355600  # 2026-03-01 09:00 UTC

_TEXT = orjson.loads((FIXTURES / "text_inbound_latest_lid_swapped.json").read_bytes())
_EDIT = orjson.loads((FIXTURES / "messages_edited_customer_author_view.json").read_bytes())


def text_body(
    message_id: str,
    remote: str,
    alt: str | None = None,
    *,
    at: int = T0,
    from_me: bool = False,
    text: str = "Oi! Vocês têm o tênis azul? 👟",
    participant: str | None = None,
) -> dict[str, Any]:
    """A ``messages.upsert`` of one text message (``remoteJidAlt`` = ``alt`` when given)."""
    body = copy.deepcopy(_TEXT)
    key = body["data"]["key"]
    key.update({"remoteJid": remote, "id": message_id, "fromMe": from_me})
    key.pop("remoteJidAlt")
    key["addressingMode"] = "lid" if remote.endswith("@lid") else "pn"
    if alt is not None:
        key["remoteJidAlt"] = alt
    if participant is not None:
        key["participant"] = participant
    body["data"]["messageTimestamp"] = at
    body["data"]["message"] = {"conversation": text}
    return body


def status_body(message_id: str, remote: str, status: str, *, at: int = T0) -> dict[str, Any]:
    """A ``messages.update`` receipt of one of our messages (Evolution v2 shape)."""
    return {
        "event": "messages.update",
        "instance": ACCOUNT,
        "data": {
            "keyId": message_id,
            "remoteJid": remote,
            "fromMe": True,
            "status": status,
            "messageId": "cm7x0y1z2000008l4ab12cd34",
            "instanceId": "bae4c1a2-7f0e-4c55-9a61-2d3b9c1e8f10",
            "timestamp": at,
        },
        "sender": f"{OWN}@s.whatsapp.net",
    }


def customer_edit_body(target_id: str, *, at: int = T0) -> dict[str, Any]:
    """A customer's edit as Evolution reports it: the chat is not in the payload."""
    body = copy.deepcopy(_EDIT)
    body["data"]["key"]["id"] = target_id
    body["data"]["timestampMs"] = str(at * 1000)
    return body


def group_body(group: str, action: str, members: list[str], *, at: int = T0) -> dict[str, Any]:
    return {
        "event": "group-participants.update",
        "instance": ACCOUNT,
        "data": {"id": group, "author": f"{OWN}@s.whatsapp.net", "participants": members,
                 "action": action},
        "date_time": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "sender": f"{OWN}@s.whatsapp.net",
    }  # fmt: skip


def cloud_change(field: str, value: dict[str, Any]) -> dict[str, Any]:
    """A Cloud API webhook with one change of ``field`` for the test account."""
    metadata = {"display_phone_number": "5511940028922", "phone_number_id": "106540352242922"}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [{"field": field, "value": {"metadata": metadata, **value}}],
            }
        ],
    }


def cloud_text(message_id: str, at: int = 1772366400, **sender: str) -> dict[str, Any]:
    """A Cloud API webhook of one text message (``**sender``: ``from``, ``from_user_id``)."""
    message = {"id": message_id, "timestamp": str(at), "type": "text", "text": {"body": "Oi 👋"}}
    return cloud_change("messages", {"messages": [{**message, **sender}]})


def normalized(provider: str, *bodies: dict[str, Any]) -> list[CanonicalEvent]:
    """The events of these webhooks, normalized for shopper ``shop-1`` (none may fail)."""
    found = []
    for body in bodies:
        result = normalize(
            provider,
            orjson.dumps(body),
            received_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
            correlation_id="routing-test",
            shopper_id=SHOPPER,
        )
        assert not result.errors, result.errors
        found.extend(result.events)
    return found


def stored(*bodies: dict[str, Any], provider: str = "evolution") -> list[StoredEvent]:
    """The events of these webhooks as routing reads them back from the store."""
    return [read_event(event.to_json()) for event in normalized(provider, *bodies)]

"""Renders ``docs/canonical-events.md`` from the models, so the reference cannot drift.

``python -m wacanon.reference > docs/canonical-events.md`` rewrites it; a test
fails when the committed file differs from what this module renders. The examples are
real normalizer output (the simulated provider, which can say everything) at a fixed
time, plus the three event types only the system emits.
"""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime
from typing import Any, Literal, get_args, get_origin

import orjson
from pydantic import BaseModel

from wacanon.canonical.business import ConversationRef, business_event
from wacanon.canonical.schema import (
    BUSINESS_EVENT_TYPES,
    SYSTEM_EVENT_TYPES,
    CanonicalEvent,
    EventType,
)
from wacanon.providers.registry import normalize
from wacanon.routing.lifecycle import lifecycle_event
from wacanon.routing.policies import Facts as PolicyFacts
from wacanon.routing.policies import Load, choose
from wacanon.routing.state import Assignment, Conversation, Lifecycle
from wacanon.routing.threads import conversation_id, private_thread_key

EXAMPLE_TIME = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
CUSTOMER = "5511987654321"
GROUP = "120363041234567890@g.us"

#: One simulated fact per normalizer event type; ``_examples`` checks none is missing.
EXAMPLE_FACTS: dict[str, dict[str, Any]] = {
    "whatsapp.message.inbound": {
        "type": "message",
        "id": "SIM-IN-1",
        "from": CUSTOMER,
        "name": "Ana",
        "text": "Oi! Vocês têm esse tênis no 42? 👟",
        "timestamp": 1772366400,
    },
    "whatsapp.message.outbound": {
        "type": "message",
        "id": "SIM-OUT-1",
        "to": CUSTOMER,
        "text": "Temos sim! Quer que eu separe?",
        "timestamp": 1772366410,
    },
    **{
        f"whatsapp.message.status.{value}": {
            "type": "status",
            "message_id": "SIM-OUT-1",
            "status": value,
            "recipient": CUSTOMER,
            "timestamp": 1772366420,
            **({"error": "Message undeliverable"} if value == "failed" else {}),
        }
        for value in ("queued", "sent", "delivered", "read", "played", "failed")
    },
    "whatsapp.message.reaction": {
        "type": "reaction",
        "id": "SIM-R-1",
        "from": CUSTOMER,
        "target": "SIM-OUT-1",
        "emoji": "❤️",
        "timestamp": 1772366430,
    },
    "whatsapp.message.edited": {
        "type": "edit",
        "id": "SIM-E-1",
        "to": CUSTOMER,
        "target": "SIM-OUT-1",
        "text": "Temos sim, no 42 e no 43!",
        "timestamp": 1772366440,
    },
    "whatsapp.message.deleted": {
        "type": "delete",
        "from": CUSTOMER,
        "target": "SIM-IN-1",
        "scope": "everyone",
        "timestamp": 1772366450,
    },
    "whatsapp.group.joined": {
        "type": "group",
        "group": GROUP,
        "action": "add",
        "participants": ["5521998765432"],
        "author": CUSTOMER,
        "timestamp": 1772366460,
    },
    "whatsapp.group.left": {
        "type": "group",
        "group": GROUP,
        "action": "remove",
        "participants": ["5521998765432"],
        "timestamp": 1772366470,
    },
    "whatsapp.group.updated": {
        "type": "group",
        "group": GROUP,
        "action": "update",
        "subject": "Clientes VIP 💎",
        "author": CUSTOMER,
        "timestamp": 1772366480,
    },
    "whatsapp.contact.updated": {
        "type": "contact",
        "wa_id": CUSTOMER,
        "name": "Ana Souza",
        "timestamp": 1772366490,
    },
    "whatsapp.connection.updated": {"type": "connection", "state": "open", "timestamp": 1772366500},
    "whatsapp.call.received": {
        "type": "call",
        "id": "SIM-CALL-1",
        "from": CUSTOMER,
        "status": "offer",
        "timestamp": 1772366510,
    },
}


def _examples() -> dict[str, dict[str, Any]]:
    examples: dict[str, dict[str, Any]] = {}
    for event_type, fact in EXAMPLE_FACTS.items():
        body = orjson.dumps({"account": "sim-store-1", "events": [fact]})
        result = normalize(
            "simulated", body, received_at=EXAMPLE_TIME, correlation_id="3f1c2a9e-example"
        )
        (event,) = result.events
        assert event.event_type == event_type, (event.event_type, event_type)
        examples[event_type] = event.model_dump(mode="json")
    inbound = examples["whatsapp.message.inbound"]
    for event_type in sorted(SYSTEM_EVENT_TYPES):
        examples[event_type] = _system_example(event_type, inbound)
    examples[BUSINESS_EXAMPLE] = _business_example(inbound)
    missing = set(get_args(EventType)) - set(examples) - BUSINESS_EVENT_TYPES
    assert not missing, f"no example for {sorted(missing)}"
    return examples


#: The business event shown in full; the others of the catalog have its shape.
BUSINESS_EXAMPLE = "commerce.order.created"


def _example_conversation(wa_id: str, inbound: dict[str, Any]) -> Conversation:
    key = private_thread_key(wa_id, "shop-1")
    return Conversation(
        id=conversation_id(key),
        thread_key=key,
        shopper_id="shop-1",
        chat_type="private",
        chat_id=wa_id,
        customer_id=wa_id,
        provider=inbound["source"]["provider"],
        account_id=inbound["source"]["account_id"],
        opened_at=EXAMPLE_TIME,
        last_event_at=EXAMPLE_TIME,
        skm_id="skm-ana",
    )


def _business_example(inbound: dict[str, Any]) -> dict[str, Any]:
    c = _example_conversation(inbound["chat"]["id"], inbound)
    ref = ConversationRef(
        c.id, c.thread_key, c.shopper_id, c.skm_id, c.chat_type, c.chat_id, c.provider,
        c.account_id,
    )  # fmt: skip
    event = business_event(
        BUSINESS_EXAMPLE,
        "order-PED-1001",
        EXAMPLE_TIME,
        {"order_id": "PED-1001", "total": "349.90", "currency": "BRL"},
        ref,
        EXAMPLE_TIME,
        "3f1c2a9e-example",
    )
    return event.model_dump(mode="json")


def _system_example(event_type: str, inbound: dict[str, Any]) -> dict[str, Any]:
    """Routing's own events describe a conversation; they carry no provider message.
    The conversation events come from routing's own builder."""
    if event_type.startswith("whatsapp.conversation."):
        return _lifecycle_example(event_type.rsplit(".", 1)[1], inbound)
    if event_type == "whatsapp.thread.assigned":
        return _assigned_example(inbound)
    data = {**inbound, "event_type": event_type, "message": None}
    data["routing"] = {
        "shopper_id": "shop-1",
        "skm_id": "skm-42" if event_type == "whatsapp.thread.assigned" else None,
        "conversation_id": "conv-7f3a",
        "thread_key": "0b5e…",
    }
    data["actor"] = {**data["actor"], "role": "system", "display_name": None}
    return CanonicalEvent.model_validate(data).model_dump(mode="json")


def _assigned_example(inbound: dict[str, Any]) -> dict[str, Any]:
    c = _example_conversation(inbound["chat"]["id"], inbound)
    c.skm_id = None
    d = choose("default", [Load("skm-ana", 3, 10), Load("skm-bia", 7, 10)], PolicyFacts())
    assert d is not None
    record = Assignment(d.skm_id, None, d.policy, d.step, d.reason, d.candidates)
    item = Lifecycle("assigned", c, EXAMPLE_TIME, d.step, 1, assignment=record)
    return lifecycle_event(item, EXAMPLE_TIME, "routing-example").model_dump(mode="json")


def _lifecycle_example(kind: str, inbound: dict[str, Any]) -> dict[str, Any]:
    chat_id = inbound["chat"]["id"]

    def conversation(wa_id: str) -> Conversation:
        c = _example_conversation(wa_id, inbound)
        c.skm_id = None
        return c

    reasons = {"opened": "first_event", "closed": "inactivity", "merged": "identity_linked"}
    absorbed = conversation("lid:103899771998284") if kind == "merged" else None
    item = Lifecycle(kind, conversation(chat_id), EXAMPLE_TIME, reasons[kind], 1, absorbed)
    event = lifecycle_event(item, EXAMPLE_TIME, "routing-example")
    return event.model_dump(mode="json")


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        return " \\| ".join(_type_name(a) for a in get_args(annotation))
    if origin is Literal:
        return " \\| ".join(
            f"`{a}`" if isinstance(a, str) else str(a) for a in get_args(annotation)
        )
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is dict:
        return "object"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    if annotation is type(None):
        return "null"
    if annotation is datetime:
        return "RFC 3339 UTC"
    return getattr(annotation, "__name__", str(annotation))


def _model_of(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The model a field holds, and whether it holds a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found[0], found[1] or get_origin(annotation) is list
    return None


def _field_rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        doc = (info.description or "").replace("\n", " ").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type_name(info.annotation)} | {doc} |")
        nested = _model_of(info.annotation)
        if nested is not None:
            model, is_list = nested
            rows.extend(_field_rows(model, f"{path}[]." if is_list else f"{path}."))
    return rows


def render() -> str:
    """The whole reference page."""
    lines = [
        "# Canonical events v1 — field reference",
        "",
        "<!-- Generated by `python -m wacanon.reference`; do not edit by hand. -->",
        "",
        "The contract is `shared/spec/canonical-events-v1.md`; this page is generated from",
        "the Pydantic models in `src/wacanon/canonical/schema.py`, so it always matches the",
        "code. Fields marked *Addition* are wacanon's own; every field of the spec is here",
        "under its spec name. All times are RFC 3339 in UTC. `event_id` is",
        "`uuid5(NAMESPACE_URL, idempotency_key)`; `idempotency_key` is the SHA-256 of the",
        "event's identity (see `docs/identity.md`).",
        "",
        "## Fields",
        "",
        "| path | type | meaning |",
        "| --- | --- | --- |",
        *_field_rows(CanonicalEvent),
        "",
        "## One example per event type",
        "",
        "Normalizer examples are real output of the simulated provider; the conversation and",
        "thread events are emitted by wacanon's routing, never by a normalizer; business events",
        "are recorded by other systems through `POST /v1/events`.",
        "",
    ]
    for event_type, example in _examples().items():
        lines += [f"### `{event_type}`", "", "```json"]
        lines.append(orjson.dumps(example, option=orjson.OPT_INDENT_2).decode())
        lines += ["```", ""]
    others = sorted(BUSINESS_EVENT_TYPES - {BUSINESS_EXAMPLE})
    lines += [
        "### The other business events",
        "",
        f"Recorded through `POST /v1/events` like `{BUSINESS_EXAMPLE}`, with the same shape:",
        ", ".join(f"`{t}`" for t in others) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")

"""Lifecycle events as canonical events: ``whatsapp.conversation.opened|closed|merged``.

They are stored like every other event, with deterministic idempotency keys — the n-th
opening of a conversation, its closing, a merge of two conversations — so a rebuild
gives the same events and a second process never stores one twice.
"""

from __future__ import annotations

from typing import Any

from wacanon.canonical.ids import event_id, idempotency_key
from wacanon.canonical.schema import CanonicalEvent
from wacanon.routing.state import Lifecycle

#: What stands in the ``provider`` part of a lifecycle event's idempotency key.
SYSTEM_KEY_PROVIDER = "wacanon"
#: ``source.provider_event`` of lifecycle events the projection derives (a rebuild
#: derives them again) and of closes by command (a rebuild replays them as inputs).
DERIVED_PREFIX = "wacanon.conversation."
COMMAND_CLOSE = "wacanon.command.close"
CLOCK_CLOSE = "wacanon.clock.close"
#: A manual assignment (``POST /v1/conversations/{id}/assign``): an input, replayed.
COMMAND_ASSIGN = "wacanon.command.assign"


def _assignment(item: Lifecycle) -> dict[str, Any]:
    a = item.assignment
    assert a is not None
    return {
        "skm_id": a.skm_id,
        "previous_skm_id": a.previous_skm_id,
        "policy": a.policy,
        "step": a.step,
        "reason": a.reason,
        "candidates": [
            {"skm_id": x.skm_id, "open": x.open, "capacity": x.capacity} for x in a.candidates
        ],
        "assigned_at": item.at,
    }


def _provider_event(item: Lifecycle) -> str:
    if not item.input:
        return f"{DERIVED_PREFIX}{item.kind}"
    if item.kind == "assigned":
        return COMMAND_ASSIGN
    return COMMAND_CLOSE if item.reason == "command" else CLOCK_CLOSE


def lifecycle_event(item: Lifecycle, received_at: Any, correlation_id: str) -> CanonicalEvent:
    c = item.conversation
    if item.kind == "assigned":
        return _assigned_event(item, received_at, correlation_id)
    absorbed = item.absorbed
    identity: tuple[str, ...] = (f"conversation.{item.kind}", c.id, str(item.opening))
    if absorbed is not None:
        identity = (f"conversation.{item.kind}", c.id, absorbed.id)
    key = idempotency_key(SYSTEM_KEY_PROVIDER, c.shopper_id, *identity)
    chat: dict[str, Any] = {"type": c.chat_type, "id": c.chat_id}
    conversation: dict[str, Any] = {
        "id": c.id,
        "thread_key": c.thread_key,
        "reason": item.reason,
        "opening": item.opening,
    }
    if absorbed is not None:
        conversation["merged_id"] = absorbed.id
        conversation["merged_thread_key"] = absorbed.thread_key
    return CanonicalEvent.model_validate(
        {
            "event_id": event_id(key),
            "event_type": f"whatsapp.conversation.{item.kind}",
            "occurred_at": item.at,
            "received_at": received_at,
            "idempotency_key": key,
            "source": {
                "provider": c.provider,
                "account_id": c.account_id,
                "provider_event": _provider_event(item),
                "provider_message_id": None,
            },
            "routing": {
                "shopper_id": c.shopper_id,
                "skm_id": c.skm_id,
                "conversation_id": c.id,
                "thread_key": c.thread_key,
            },
            "actor": {"role": "system"},
            "chat": chat,
            "conversation": conversation,
            "security": {"signature_valid": True, "risk_flags": []},
            "trace": {"correlation_id": correlation_id},
        }
    )


def _assigned_event(item: Lifecycle, received_at: Any, correlation_id: str) -> CanonicalEvent:
    """``whatsapp.thread.assigned``: a derived one is keyed by the conversation's n-th
    assignment (a rebuild derives it again under the same key); a manual one, an input
    that a rebuild replays, also by its moment — after a rebuild the count may be lower
    than it was, and a later command must not be taken for an earlier one."""
    c = item.conversation
    assignment = _assignment(item)
    identity = ["thread.assigned", c.id, str(item.opening)]
    if item.input:
        identity += ["command", item.at.isoformat()]
    key = idempotency_key(SYSTEM_KEY_PROVIDER, c.shopper_id, *identity)
    return CanonicalEvent.model_validate(
        {
            "event_id": event_id(key),
            "event_type": "whatsapp.thread.assigned",
            "occurred_at": item.at,
            "received_at": received_at,
            "idempotency_key": key,
            "source": {
                "provider": c.provider,
                "account_id": c.account_id,
                "provider_event": _provider_event(item),
                "provider_message_id": None,
            },
            "routing": {
                "shopper_id": c.shopper_id,
                "skm_id": assignment["skm_id"],
                "conversation_id": c.id,
                "thread_key": c.thread_key,
            },
            "actor": {"role": "system"},
            "chat": {"type": c.chat_type, "id": c.chat_id},
            "assignment": assignment,
            "security": {"signature_valid": True, "risk_flags": []},
            "trace": {"correlation_id": correlation_id},
        }
    )

"""Thread keys, conversation ids and the identity spellings of the graph.

Thread keys keep the seed system's format so its users can migrate: a private chat is
``whatsapp:<wa_id>|shopper:<shopper_id>|group:null`` and a group
``whatsapp:group:<group id as given>|shopper:<shopper_id>``. A conversation keeps the key
it was created with — a LID-born one keeps ``whatsapp:lid:<digits>|…`` after the phone
number appears; later identities reach it through the graph, not through its key.
"""

from __future__ import annotations

import uuid

from wacanon.canonical.ids import id_digits, phone_digits

#: ``conversation id = uuid5(CONVERSATION_NAMESPACE, thread_key)``: a rebuild from the
#: event log gives every conversation the id it had.
CONVERSATION_NAMESPACE = uuid.UUID("6b1f6f3e-2f55-5d0a-9a57-5c1e0c3b7a21")


def private_thread_key(wa_id: str, shopper_id: str) -> str:
    return f"whatsapp:{wa_id}|shopper:{shopper_id}|group:null"


def group_thread_key(group_id: str, shopper_id: str) -> str:
    return f"whatsapp:group:{group_id}|shopper:{shopper_id}"


def conversation_id(thread_key: str) -> str:
    return str(uuid.uuid5(CONVERSATION_NAMESPACE, thread_key))


def identities_of(phone: str | None, lid: str | None, user_id: str | None) -> list[str]:
    """A person's identities as the graph spells them — the spec's ``wa_id`` forms: phone
    digits, ``lid:<digits>``, ``bsuid:<BSUID>`` — the phone first (it names the person
    best), then the LID, then the BSUID."""
    found = []
    if phone:
        found.append(phone)
    if lid:
        found.append(f"lid:{lid}")
    if user_id:
        found.append(f"bsuid:{user_id}")
    return found


def identity_of_wa_id(text: str) -> str | None:
    """The graph's spelling of a ``wa_id`` as the spec writes it (or as a person types it:
    ``+55 11 98765-4321``, ``lid:103…``, ``bsuid:BR.…``); None when it names nobody."""
    text = text.strip()
    if text.startswith("lid:"):
        digits = id_digits(text[4:])
        return f"lid:{digits}" if digits else None
    if text.startswith("bsuid:"):
        return text if len(text) > len("bsuid:") else None
    phone = phone_digits(text)
    return phone or None

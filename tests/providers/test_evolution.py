"""Evolution API normalizer: identities, LID shapes, event names, statuses, bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from wacanon.canonical.schema import CanonicalEvent
from wacanon.providers.common import NormalizeContext, NormalizeResult
from wacanon.providers.evolution import normalize

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OWN = "5511988887777@s.whatsapp.net"
CUSTOMER = "5511987654321@s.whatsapp.net"
CUSTOMER_LID = "103899771998284@lid"
GROUP = "120363025246125888@g.us"
MSG_ID = "3EB0C431C26A1916E5E3"
DATE_TIME = "2026-03-01T08:59:58.412Z"  # server-local time labelled Z


# ---------------------------------------------------------------- builders


def envelope(event: str, data: Any, **extra: Any) -> dict[str, Any]:
    body = {
        "event": event,
        "instance": "loja-centro",
        "data": data,
        "destination": "https://hooks.example.com.br/evolution",
        "date_time": DATE_TIME,
        "sender": OWN,
        "server_url": "https://evo.example.com.br",
        "apikey": "B6D711FCDE4D4FD5936544120E713976",
    }
    body.update(extra)
    return body


def key(
    remote: str = CUSTOMER, *, msg_id: str = MSG_ID, from_me: bool = False, **alt: Any
) -> dict[str, Any]:
    return {"remoteJid": remote, "fromMe": from_me, "id": msg_id, **alt}


def upsert(
    k: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "key": k or key(),
        "pushName": "Rodrigo Almeida",
        "message": message if message is not None else {"conversation": "Oi, tudo bem?"},
        "messageType": "conversation",
        "messageTimestamp": 1772355600,
        "instanceId": "bae4c1a2-7f0e-4c55-9a61-2d3b9c1e8f10",
        "source": "android",
    }
    data.update(fields)
    return data


def update(status: Any = "READ", **fields: Any) -> dict[str, Any]:
    data = {"keyId": MSG_ID, "remoteJid": CUSTOMER, "fromMe": True, "status": status}
    data.update(fields)
    return data


def run(body: Any, *, account: str | None = None) -> NormalizeResult:
    raw = body if isinstance(body, str | bytes) else json.dumps(body, ensure_ascii=False)
    ctx = NormalizeContext(received_at=RECEIVED, correlation_id="test", account=account)
    return normalize(raw, ctx)


def one(body: Any) -> CanonicalEvent:
    result = run(body)
    assert not result.errors, result.errors
    assert len(result.events) == 1, result.events
    return result.events[0]


def keys(body: Any) -> list[str]:
    return [e.idempotency_key for e in run(body).events]


# ---------------------------------------------------------------- envelope and names


@pytest.mark.parametrize("name", ["messages.upsert", "MESSAGES_UPSERT", "messages-upsert"])
def test_every_spelling_of_an_event_name_is_one_handler(name: str) -> None:
    event = one(envelope(name, upsert()))
    assert event.source.provider_event == "messages.upsert"
    assert event.idempotency_key == one(envelope("messages.upsert", upsert())).idempotency_key


def test_instance_is_the_account_and_sender_is_never_the_customer() -> None:
    event = one(envelope("messages.upsert", upsert()))
    assert event.source.account_id == "loja-centro"
    assert event.actor.wa_id == "5511987654321"
    assert event.chat.id == "5511987654321"


def test_explicit_account_wins_and_missing_account_is_an_error() -> None:
    assert one(envelope("messages.upsert", upsert())).source.account_id == "loja-centro"
    assert (
        run(envelope("messages.upsert", upsert()), account="x").events[0].source.account_id == "x"
    )
    body = envelope("messages.upsert", upsert())
    del body["instance"]
    result = run(body)
    assert not result.events
    assert "--account" in result.errors[0].message


def test_message_timestamp_beats_date_time_in_every_spelling() -> None:
    expected = datetime.fromtimestamp(1772355600, tz=UTC)
    for stamp in (1772355600, "1772355600", {"low": 1772355600, "high": 0, "unsigned": True}):
        event = one(envelope("messages.upsert", upsert(messageTimestamp=stamp)))
        assert event.occurred_at == expected


def test_events_without_their_own_time_take_received_at_not_date_time() -> None:
    """``date_time`` is Evolution's local server time labelled Z: never an occurred_at."""
    assert one(envelope("messages.update", update())).occurred_at == RECEIVED
    no_time = envelope("messages.update", update())
    del no_time["date_time"]
    assert one(no_time).occurred_at == RECEIVED


def test_date_time_still_tells_apart_two_facts_with_the_same_ids() -> None:
    """A member re-added later is a new fact: the envelope time is part of its identity."""
    data = {
        "id": "120363041234567890@g.us",
        "action": "add",
        "participants": ["5521998765432@s.whatsapp.net"],
    }
    first = envelope("group-participants.update", data)
    redelivered = envelope("group-participants.update", data)
    later = envelope("group-participants.update", data, date_time="2026-03-01T10:15:00.000Z")
    assert one(first).idempotency_key == one(redelivered).idempotency_key
    assert one(first).idempotency_key != one(later).idempotency_key
    assert one(later).occurred_at == RECEIVED


# ---------------------------------------------------------------- LID addressing

LID_SHAPES = {
    "baileys6_senderPn": (
        key("131159895875721@lid", senderPn="5521998765432@s.whatsapp.net"),
        "5521998765432",
        "131159895875721",
    ),
    "evolution23_previousRemoteJid": (
        key(
            "131159895875721@lid",
            senderPn="5521998765432@s.whatsapp.net",
            previousRemoteJid="131159895875721@lid",
        ),
        "5521998765432",
        "131159895875721",
    ),
    "baileys7_mode_lid": (
        key(CUSTOMER_LID, remoteJidAlt=CUSTOMER, addressingMode="lid"),
        "5511987654321",
        "103899771998284",
    ),
    "baileys7_mode_pn": (
        key(CUSTOMER, remoteJidAlt=CUSTOMER_LID, addressingMode="pn"),
        "5511987654321",
        "103899771998284",
    ),
    "latest_swapped": (
        key(CUSTOMER, remoteJidAlt=CUSTOMER_LID, addressingMode="pn", senderLid=CUSTOMER_LID),
        "5511987654321",
        "103899771998284",
    ),
    "pure_lid": (
        key("264123456789012@lid", addressingMode="lid"),
        "lid:264123456789012",
        "264123456789012",
    ),
    "device_suffix": (key("5511987654321:12@s.whatsapp.net"), "5511987654321", None),
}


@pytest.mark.parametrize("shape", list(LID_SHAPES))
def test_private_lid_shapes(shape: str) -> None:
    k, wa_id, lid = LID_SHAPES[shape]
    event = one(envelope("messages.upsert", upsert(k)))
    assert (event.actor.wa_id, event.actor.lid) == (wa_id, lid)
    assert event.chat.id == wa_id
    assert event.chat.lid == lid


def test_pure_lid_sender_is_flagged_and_keeps_no_phone() -> None:
    event = one(envelope("messages.upsert", upsert(LID_SHAPES["pure_lid"][0], pushName=None)))
    assert event.chat.phone is None
    assert "actor_lid_only" in event.security.risk_flags
    assert event.actor.display_name is None


GROUP_SHAPES = {
    "baileys7_participantAlt_phone": {
        "participant": "98765432109876@lid",
        "participantAlt": "5511976543210@s.whatsapp.net",
        "addressingMode": "lid",
    },
    "baileys7_participantAlt_lid": {
        "participant": "5511976543210@s.whatsapp.net",
        "participantAlt": "98765432109876@lid",
        "addressingMode": "pn",
    },
    "baileys6_participantPn": {
        "participant": "98765432109876@lid",
        "participantPn": "5511976543210@s.whatsapp.net",
        "participantLid": "98765432109876@lid",
    },
}


@pytest.mark.parametrize("shape", list(GROUP_SHAPES))
def test_group_sender_is_the_participant_in_every_shape(shape: str) -> None:
    event = one(envelope("messages.upsert", upsert(key(GROUP, **GROUP_SHAPES[shape]))))
    assert event.chat.type == "group"
    assert event.chat.id == GROUP
    assert (event.actor.wa_id, event.actor.lid) == ("5511976543210", "98765432109876")


def test_same_message_seen_under_lid_and_phone_has_one_key() -> None:
    as_lid = keys(envelope("messages.upsert", upsert(key(CUSTOMER_LID, remoteJidAlt=CUSTOMER))))
    as_phone = keys(envelope("messages.upsert", upsert(key(CUSTOMER, remoteJidAlt=CUSTOMER_LID))))
    assert as_lid == as_phone


# ---------------------------------------------------------------- identity


def test_redelivery_and_reserialization_give_the_same_keys() -> None:
    body = envelope("messages.upsert", upsert())
    first = keys(body)
    assert keys(body) == first
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=3, sort_keys=True)
    assert keys(reordered) == first
    # Evolution 1.8 redelivered one key.id with another messageTimestamp (issue #631)
    assert keys(envelope("messages.upsert", upsert(messageTimestamp=1772355860))) == first
    assert (
        keys(envelope("messages.upsert", upsert(), date_time="2026-03-01T09:10:00.000Z")) == first
    )


def test_different_facts_give_different_keys() -> None:
    found = {
        *keys(envelope("messages.upsert", upsert())),
        *keys(envelope("messages.upsert", upsert(key(msg_id="3EB0OTHER0000000001")))),
        *keys(envelope("messages.update", update("DELIVERY_ACK"))),
        *keys(envelope("messages.update", update("READ"))),
        *keys(envelope("messages.delete", key())),
    }
    assert len(found) == 5


def test_send_message_and_its_upsert_echo_share_a_key() -> None:
    sent = upsert(key(from_me=True), pushName="Você", status="PENDING")
    via_send = one(envelope("send.message", sent))
    via_upsert = one(envelope("messages.upsert", {**sent, "status": "SERVER_ACK"}))
    assert via_send.idempotency_key == via_upsert.idempotency_key
    for event in (via_send, via_upsert):
        assert event.event_type == "whatsapp.message.outbound"
        assert event.actor.role == "business"
        assert event.actor.wa_id == "5511988887777"
        assert event.actor.display_name is None  # never the literal "Você"
        assert event.chat.id == "5511987654321"


def test_send_message_is_outbound_even_without_from_me() -> None:
    k = key()
    del k["fromMe"]
    assert one(envelope("send.message", upsert(k))).event_type == "whatsapp.message.outbound"


def test_status_inside_an_upsert_makes_no_status_event() -> None:
    event = one(envelope("messages.upsert", upsert(status="READ")))
    assert event.event_type == "whatsapp.message.inbound"
    assert event.status is None


# ---------------------------------------------------------------- content


def test_quote_context_falls_back_to_the_top_level_context_info() -> None:
    context = {
        "stanzaId": "3EB0A9F2C41D7B6E0012",
        "mentionedJid": [OWN, "41234567890123@lid"],
        "isForwarded": True,
        "forwardingScore": 2,
    }
    message = one(envelope("messages.upsert", upsert(contextInfo=context))).message
    assert message is not None
    assert message.reply_to == "3EB0A9F2C41D7B6E0012"
    assert message.mentions == ["5511988887777", "lid:41234567890123"]
    assert message.forwarded is True
    assert message.frequently_forwarded is False


def test_content_context_wins_and_message_context_info_is_harmless() -> None:
    content = {
        "extendedTextMessage": {"text": "Veja", "contextInfo": {"stanzaId": "3A_FROM_CONTENT"}},
        "messageContextInfo": {"deviceListMetadataVersion": 2, "messageSecret": "c2VjcmV0"},
    }
    latest = {
        "deviceListMetadata": {"senderTimestamp": "1753614857"},
        "deviceListMetadataVersion": 2,
    }
    body = envelope("messages.upsert", upsert(message=content, contextInfo=latest))
    message = one(body).message
    assert message is not None
    assert (message.text, message.reply_to) == ("Veja", "3A_FROM_CONTENT")


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        ({"audioMessage": {"mimetype": "audio/ogg; codecs=opus", "ptt": True}}, "audio"),
        ({"stickerMessage": {"mimetype": "image/webp", "isAnimated": True}}, "sticker"),
        (
            {"contactMessage": {"displayName": "Ana", "vcard": "BEGIN:VCARD\nFN:Ana\nEND:VCARD"}},
            "contacts",
        ),
        ({"pollCreationMessage": {"name": "Cor?", "options": [{"optionName": "Azul"}]}}, "poll"),
        ({"viewOnceMessage": {"message": {"imageMessage": {"caption": "só uma vez"}}}}, "image"),
        ({"newFancyMessage": {"x": 1}}, "unsupported"),
    ],
)
def test_content_types(content: dict[str, Any], kind: str) -> None:
    message = one(envelope("messages.upsert", upsert(message=content))).message
    assert message is not None
    assert message.type == kind


def test_voice_note_is_marked_voice() -> None:
    voice = {"audioMessage": {"mimetype": "audio/ogg; codecs=opus", "ptt": True, "seconds": 4}}
    message = one(envelope("messages.upsert", upsert(message=voice))).message
    assert message is not None
    assert message.media is not None
    assert message.media.voice is True


@pytest.mark.parametrize(
    "data",
    [
        upsert(message={}),
        {**upsert(), "message": None},
        upsert(message={"messageContextInfo": {"deviceListMetadataVersion": 2}}),
        {"key": key(), "messageStubType": 2, "messageStubParameters": ["No session record"]},
        upsert(key("status@broadcast", participant=CUSTOMER)),
        upsert(key("120363144038483540@newsletter")),
        upsert(message={"pollUpdateMessage": {"vote": {"encPayload": "AAAA"}}}),
        upsert(message={"protocolMessage": {"type": 3, "ephemeralExpiration": 604800}}),
    ],
)
def test_items_with_nothing_canonical_are_ignored(data: dict[str, Any]) -> None:
    result = run(envelope("messages.upsert", data))
    assert (len(result.events), result.ignored, result.errors) == (0, 1, [])


# ---------------------------------------------------------------- reactions, edits, deletes


def reaction(emoji: str, *, from_me: bool = False) -> dict[str, Any]:
    target = {"remoteJid": CUSTOMER, "fromMe": True, "id": "3EB0A9F2C41D7B6E0012"}
    content = {
        "reactionMessage": {"key": target, "text": emoji, "senderTimestampMs": "1772355700000"}
    }
    return upsert(key(msg_id="3A7E4C1B9D2F5A8E6C30", from_me=from_me), message=content)


def test_reaction_and_its_removal() -> None:
    added = one(envelope("messages.upsert", reaction("👍")))
    removed = one(envelope("messages.upsert", reaction("")))
    assert added.event_type == removed.event_type == "whatsapp.message.reaction"
    assert added.message is not None
    assert removed.message is not None
    assert added.message.reaction is not None
    assert removed.message.reaction is not None
    assert added.message.reaction.emoji == "👍"
    assert removed.message.reaction.emoji == ""
    assert added.message.reaction.message_id == "3EB0A9F2C41D7B6E0012"
    assert added.source.provider_message_id == "3A7E4C1B9D2F5A8E6C30"
    assert added.idempotency_key != removed.idempotency_key
    business = one(envelope("messages.upsert", reaction("👍", from_me=True)))
    assert business.actor.role == "business"
    assert business.idempotency_key != added.idempotency_key


def revoke_upsert() -> dict[str, Any]:
    revoked = {"remoteJid": OWN, "fromMe": True, "id": MSG_ID}
    content = {"protocolMessage": {"key": revoked, "type": "REVOKE"}}
    return upsert(key(msg_id="3A0REV0KE00000000001"), message=content)


@pytest.mark.parametrize(
    "second",
    [
        envelope("messages.delete", {**key(), "status": "DELETED"}),
        envelope("messages.delete", key()),
        envelope("MESSAGES_DELETE", key(CUSTOMER_LID, remoteJidAlt=CUSTOMER)),
        envelope(
            "messages.edited", {"key": {"remoteJid": OWN, "fromMe": True, "id": MSG_ID}, "type": 0}
        ),
    ],
)
def test_a_revoke_reported_twice_is_one_fact(second: dict[str, Any]) -> None:
    first = one(envelope("messages.upsert", revoke_upsert()))
    again = one(second)
    assert first.event_type == again.event_type == "whatsapp.message.deleted"
    assert first.idempotency_key == again.idempotency_key
    for event in (first, again):
        assert event.message is not None
        assert (event.message.target_id, event.message.delete_scope) == (MSG_ID, "everyone")
        assert event.message.type == "system"
    assert first.source.provider_message_id == "3A0REV0KE00000000001"


NEW_TEXT = "Oi! Vocês ainda têm o tênis azul no tamanho 41?"


@pytest.mark.parametrize(
    "body",
    [
        envelope(
            "messages.edited",
            {
                "key": key(),
                "type": 14,
                "editedMessage": {"conversation": NEW_TEXT},
                "timestampMs": "1772357100000",
            },
        ),
        envelope(
            "messages.edited",
            {
                "key": key(),
                "type": "MESSAGE_EDIT",
                "editedMessage": {"extendedTextMessage": {"text": NEW_TEXT}},
            },
        ),
        envelope(
            "messages.update",
            update(
                "SERVER_ACK",
                fromMe=False,
                message={"editedMessage": {"message": {"conversation": NEW_TEXT}}},
            ),
        ),
        envelope(
            "messages.update",
            update(
                None,
                fromMe=False,
                message={
                    "protocolMessage": {
                        "key": key(),
                        "type": 14,
                        "editedMessage": {"conversation": NEW_TEXT},
                    }
                },
            ),
        ),
        envelope(
            "messages.upsert",
            upsert(
                key(msg_id="3A0ED1T0000000000001"),
                message={
                    "editedMessage": {
                        "message": {
                            "protocolMessage": {
                                "key": key(),
                                "type": 14,
                                "editedMessage": {"conversation": NEW_TEXT},
                            }
                        }
                    }
                },
            ),
        ),
    ],
    ids=["edited_number", "edited_name", "update_message", "update_protocol", "upsert_wrapper"],
)
def test_every_report_of_one_edit_has_one_key(body: dict[str, Any]) -> None:
    event = one(body)
    reference = one(
        envelope(
            "messages.edited",
            {"key": key(), "type": 14, "editedMessage": {"conversation": NEW_TEXT}},
        )
    )
    assert event.event_type == "whatsapp.message.edited"
    assert event.message is not None
    assert (event.message.type, event.message.text, event.message.target_id) == (
        "text",
        NEW_TEXT,
        MSG_ID,
    )
    assert event.idempotency_key == reference.idempotency_key


def test_another_edit_of_the_same_message_is_another_fact() -> None:
    def edit(text: str) -> str:
        body = {"key": key(), "type": 14, "editedMessage": {"conversation": text}}
        return one(envelope("messages.edited", body)).idempotency_key

    assert edit("tamanho 41") != edit("tamanho 40")


def test_edit_key_from_the_authors_side_is_not_taken_for_ours() -> None:
    """A customer's edit names our own number with fromMe true (evolution-api #1367)."""
    body = {
        "key": {"remoteJid": OWN, "fromMe": True, "id": MSG_ID},
        "type": 14,
        "editedMessage": {"conversation": "x"},
    }
    event = one(envelope("messages.edited", body))
    assert event.message is not None
    assert event.message.direction == "inbound"
    assert event.actor.role == "customer"
    assert event.chat.id != "5511988887777"


@pytest.mark.parametrize("kind", [3, 5, "HISTORY_SYNC_NOTIFICATION", None])
def test_other_protocol_messages_in_messages_edited_are_ignored(kind: Any) -> None:
    result = run(envelope("messages.edited", {"key": key(), "type": kind}))
    assert (result.events, result.ignored, result.errors) == ([], 1, [])


# ---------------------------------------------------------------- statuses


@pytest.mark.parametrize(
    ("status", "value"),
    [
        ("ERROR", "failed"),
        ("PENDING", "queued"),
        ("SERVER_ACK", "sent"),
        ("DELIVERY_ACK", "delivered"),
        ("READ", "read"),
        ("PLAYED", "played"),
        (0, "failed"),
        (1, "queued"),
        (2, "sent"),
        (3, "delivered"),
        (4, "read"),
        (5, "played"),
        ("4", "read"),
    ],
)
def test_status_values(status: Any, value: str) -> None:
    event = one(envelope("messages.update", update(status)))
    assert event.event_type == f"whatsapp.message.status.{value}"
    assert event.status is not None
    assert (event.status.value, event.status.message_id) == (value, MSG_ID)
    assert event.status.recipient_wa_id == "5511987654321"
    expected_role = "system" if value in ("failed", "queued", "sent") else "customer"
    assert event.actor.role == expected_role


@pytest.mark.parametrize("status", ["DELETED", None])
def test_deleted_or_missing_status_is_no_event(status: Any) -> None:
    body = update(status)
    if status is None:
        del body["status"]
    result = run(envelope("messages.update", body))
    assert (result.events, result.ignored, result.errors) == ([], 1, [])


def test_unknown_status_is_an_error_with_its_path() -> None:
    result = run(envelope("messages.update", update("WEIRD")))
    assert not result.events
    assert result.errors[0].path == "$.data.status"


def test_business_reading_an_inbound_message() -> None:
    event = one(envelope("messages.update", update("READ", fromMe=False)))
    assert event.actor.role == "business"
    assert event.status is not None
    assert event.status.recipient_wa_id is None
    assert event.chat.id == "5511987654321"


def test_group_receipts_carry_their_participant() -> None:
    first = one(envelope("messages.update", update(remoteJid=GROUP, participant=CUSTOMER)))
    other = one(
        envelope(
            "messages.update", update(remoteJid=GROUP, participant="5521998765432@s.whatsapp.net")
        )
    )
    assert first.status is not None
    assert first.status.participant == "5511987654321"
    assert first.actor.wa_id == "5511987654321"
    assert first.chat.id == GROUP
    assert first.idempotency_key != other.idempotency_key


def test_evolution_23_participant_equal_to_remote_jid_is_no_participant() -> None:
    group = one(envelope("messages.update", update(remoteJid=GROUP, participant=GROUP)))
    assert group.status is not None
    assert group.status.participant is None
    private = one(envelope("messages.update", update(participant=CUSTOMER)))
    assert private.status is not None
    assert private.status.participant is None
    assert private.idempotency_key == one(envelope("messages.update", update())).idempotency_key


def test_latest_server_ack_default_on_an_inbound_message_is_ignored() -> None:
    result = run(envelope("messages.update", update("SERVER_ACK", fromMe=False)))
    assert (result.events, result.ignored) == ([], 1)


def test_poll_vote_updates_are_ignored() -> None:
    votes = [{"name": "Azul", "voters": [CUSTOMER]}]
    result = run(envelope("messages.update", update("SERVER_ACK", pollUpdates=votes)))
    assert (result.events, result.ignored) == ([], 1)


# ------------------------------------------------ groups, contacts, connection, calls


@pytest.mark.parametrize(
    ("action", "event_type"),
    [
        ("add", "whatsapp.group.joined"),
        ("remove", "whatsapp.group.left"),
        ("leave", "whatsapp.group.left"),
        ("promote", "whatsapp.group.updated"),
        ("demote", "whatsapp.group.updated"),
    ],
)
def test_group_participant_actions(action: str, event_type: str) -> None:
    data = {"id": GROUP, "author": OWN, "participants": [CUSTOMER], "action": action}
    event = one(envelope("group-participants.update", data))
    assert event.event_type == event_type
    assert event.group is not None
    assert (event.group.action, event.group.participants) == (action, ["5511987654321"])
    assert event.actor.role == "business"


def test_participants_as_strings_objects_and_participants_data_agree() -> None:
    strings = {
        "id": GROUP,
        "participants": [CUSTOMER_LID],
        "action": "add",
        "participantsData": [{"jid": CUSTOMER_LID, "phoneNumber": CUSTOMER, "name": "Rodrigo"}],
    }
    objects = {
        "id": GROUP,
        "participants": [{"id": CUSTOMER_LID, "phoneNumber": CUSTOMER, "admin": None}],
        "action": "add",
    }
    first, second = (
        one(envelope("group-participants.update", strings)),
        one(envelope("group-participants.update", objects)),
    )
    assert first.group is not None
    assert second.group is not None
    assert first.group.participants == second.group.participants == ["5511987654321"]
    assert first.idempotency_key == second.idempotency_key
    assert first.actor.role == "system"  # no author


def test_unresolved_participants_data_phone_is_not_taken_for_a_phone() -> None:
    data = {
        "id": GROUP,
        "participants": ["41234567890123@lid"],
        "action": "remove",
        "participantsData": [{"jid": "41234567890123@lid", "phoneNumber": "41234567890123"}],
    }
    event = one(envelope("group-participants.update", data))
    assert event.group is not None
    assert event.group.participants == ["lid:41234567890123"]


def test_unknown_group_action_is_an_error() -> None:
    data = {"id": GROUP, "participants": [CUSTOMER], "action": "explode"}
    result = run(envelope("group-participants.update", data))
    assert result.errors[0].path == "$.data.action"


def test_groups_upsert_and_update() -> None:
    created = one(
        envelope(
            "groups.upsert",
            [
                {
                    "id": GROUP,
                    "subject": "Clientes VIP",
                    "owner": OWN,
                    "creation": 1772357300,
                    "participants": [{"id": OWN}],
                }
            ],
        )
    )
    assert created.event_type == "whatsapp.group.updated"
    assert created.group is not None
    assert (created.group.action, created.group.subject) == ("create", "Clientes VIP")
    renamed = one(
        envelope(
            "groups.update", [{"id": GROUP, "subject": "Entregas Zona Sul", "author": CUSTOMER}]
        )
    )
    described = one(
        envelope("groups.update", [{"id": GROUP, "desc": "Regras do grupo", "author": CUSTOMER}])
    )
    assert renamed.group is not None
    assert described.group is not None
    assert renamed.group.subject == "Entregas Zona Sul"
    assert described.group.description == "Regras do grupo"
    assert renamed.actor.wa_id == "5511987654321"
    assert renamed.idempotency_key != described.idempotency_key


def test_contacts_as_array_or_single_object() -> None:
    contact = {"remoteJid": CUSTOMER, "pushName": "Rodrigo Almeida", "profilePicUrl": None}
    as_object = one(envelope("contacts.update", contact))
    as_array = run(
        envelope("contacts.upsert", [contact, {**contact, "remoteJid": CUSTOMER_LID}])
    ).events
    assert as_object.event_type == "whatsapp.contact.updated"
    assert as_object.contact is not None
    assert (as_object.contact.wa_id, as_object.contact.display_name) == (
        "5511987654321",
        "Rodrigo Almeida",
    )
    assert [e.chat.id for e in as_array] == ["5511987654321", "lid:103899771998284"]
    assert as_array[0].idempotency_key == as_object.idempotency_key


def test_connection_update() -> None:
    data = {"instance": "loja-centro", "wuid": OWN, "state": "open", "statusReason": 200}
    event = one(envelope("connection.update", data))
    assert event.event_type == "whatsapp.connection.updated"
    assert event.connection is not None
    assert (event.connection.state, event.connection.reason, event.connection.wa_id) == (
        "open",
        "200",
        "5511988887777",
    )
    closed = one(envelope("connection.update", {"state": "close", "statusReason": 401}))
    assert closed.idempotency_key != event.idempotency_key


def test_call() -> None:
    data = {
        "id": "A1B2C3D4E5F6",
        "from": CUSTOMER_LID,
        "callerPn": CUSTOMER,
        "status": "offer",
        "isVideo": False,
        "isGroup": False,
        "date": "2026-03-01T11:58:40.000Z",
    }
    event = one(envelope("call", data))
    assert event.event_type == "whatsapp.call.received"
    assert event.call is not None
    assert (event.call.id, event.call.status, event.call.video) == ("A1B2C3D4E5F6", "offer", False)
    assert event.actor.wa_id == "5511987654321"
    assert event.occurred_at == datetime(2026, 3, 1, 11, 58, 40, tzinfo=UTC)
    assert (
        one(envelope("call", {**data, "status": "reject"})).idempotency_key != event.idempotency_key
    )


@pytest.mark.parametrize(
    "name",
    [
        "qrcode.updated",
        "QRCODE_UPDATED",
        "presence.update",
        "chats.upsert",
        "chats.update",
        "chats.delete",
        "chats.set",
        "labels.edit",
        "labels.association",
        "messages.set",
        "application.startup",
        "logout.instance",
        "remove.instance",
        "typebot.start",
        "typebot-change-status",
        "creds.update",
    ],
)
def test_events_with_nothing_canonical_are_ignored(name: str) -> None:
    result = run(envelope(name, None))
    assert (result.events, result.ignored, result.errors) == ([], 1, [])


# ---------------------------------------------------------------- bad input


def test_a_broken_item_gives_one_error_with_its_path_and_the_rest_still_work() -> None:
    batch = [upsert(key(msg_id="A1")), upsert(key(msg_id=12345)), upsert(key(msg_id="A3"))]
    result = run(envelope("messages.upsert", batch))
    assert [e.message.id for e in result.events if e.message] == ["A1", "A3"]
    assert len(result.errors) == 1
    assert result.errors[0].path == "$.data[1].key.id"
    assert result.errors[0].provider_event == "messages.upsert"


def test_a_mistyped_content_field_is_reported_where_it_is() -> None:
    content = {"ephemeralMessage": {"message": {"imageMessage": {"caption": 42}}}}
    result = run(envelope("messages.upsert", upsert(message=content)))
    assert not result.events
    assert result.errors[0].path == "$.data.message.ephemeralMessage.message.imageMessage.caption"


def test_a_message_without_an_id_is_an_error() -> None:
    k = key()
    del k["id"]
    result = run(envelope("messages.upsert", upsert(k)))
    assert result.errors[0].path == "$.data.key.id"


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        "null",
        '"x"',
        "{}",
        '{"event": 5}',
        '{"event": "messages.upsert", "data": "x"}',
        '{"event": "messages.upsert", "instance": "i", "data": "x"}',
        '{"event": "messages.upsert", "instance": "i", "data": [1, null, "x"]}',
        '{"event": "no.such.event", "instance": "i", "data": {}}',
        '{"event": "messages.upsert", "instance": "i", "data": {"key": "k"}}',
        "not json",
        "[" * 5000 + "]" * 5000,
        '{"event": "messages.upsert", "instance": "\ud800"}',
    ],
)
def test_arbitrary_json_gives_error_values(body: str) -> None:
    result = run(body)
    assert result.errors
    assert not result.events


def test_huge_numbers_do_not_raise() -> None:
    data = upsert(messageTimestamp=10**400, message={"imageMessage": {"fileLength": 10**30}})
    event = one(envelope("messages.upsert", data))
    assert event.occurred_at == RECEIVED
    orjson.loads(event.model_dump_json())


def test_empty_batch_is_ignored_not_an_error() -> None:
    result = run(envelope("contacts.upsert", []))
    assert (result.events, result.ignored, result.errors) == ([], 1, [])


def test_business_reading_a_group_message_names_no_participant() -> None:
    data = update("READ", fromMe=False, remoteJid=GROUP, participant=CUSTOMER)
    event = one(envelope("messages.update", data))
    assert event.actor.role == "business"
    assert event.status is not None
    assert event.status.participant is None
    assert event.chat.id == GROUP


def test_order_message_keeps_the_order_id() -> None:
    order = {"orderMessage": {"orderId": "1234567890", "message": "Quero estes 2 itens"}}
    event = one(envelope("messages.upsert", upsert(message=order)))
    assert event.message is not None
    assert event.message.order is not None
    assert (event.message.order.order_id, event.message.order.catalog_id) == ("1234567890", None)


@pytest.mark.parametrize("ts", [-1, 10**15, "tomorrow"])
def test_an_implausible_message_timestamp_is_flagged(ts: Any) -> None:
    event = one(envelope("messages.upsert", upsert(messageTimestamp=ts)))
    assert event.occurred_at == RECEIVED
    assert "timestamp_out_of_range" in event.security.risk_flags
    assert keys(envelope("messages.upsert", upsert(messageTimestamp=ts))) == [event.idempotency_key]


@pytest.mark.parametrize("date_time", [1772355612001, True, ["2026-03-01"], {"at": 1}])
def test_a_date_time_that_is_not_a_string_costs_no_event(date_time: Any) -> None:
    """Not a readable time, as an unreadable string is: the event is there, its identity
    the same as without one (before, the whole item was an error: ``Expected str``)."""
    body = envelope("messages.upsert", upsert(), date_time=date_time)
    event = one(body)
    assert [event.idempotency_key] == keys(envelope("messages.upsert", upsert(), date_time=None))


def test_an_unreadable_date_time_never_enters_an_identity() -> None:
    state = {"instance": "loja-centro", "state": "open", "statusReason": 200}
    body = envelope("connection.update", state, date_time="not a time")
    raw = json.dumps(body)
    later = NormalizeContext(received_at=RECEIVED + timedelta(hours=1), correlation_id="t")
    assert [e.idempotency_key for e in normalize(raw, later).events] == keys(body)
    assert "timestamp_out_of_range" not in one(body).security.risk_flags

"""Focused behaviour of the Baileys normalizer: identities, LIDs, flavours, errors, ignores."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wacanon.canonical.schema import CanonicalEvent
from wacanon.providers import baileys
from wacanon.providers.common import NormalizeContext, NormalizeResult

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ANA_PN, ANA_LID = "5511987654321@s.whatsapp.net", "187362847263912@lid"
BRUNO_PN, BRUNO_LID = "5521998877665@s.whatsapp.net", "246813579024681@lid"
GROUP = "120363025987654321@g.us"
BRIDGE = Path(__file__).resolve().parents[2] / "bridges" / "baileys" / "index.js"


# ---------------------------------------------------------------------------- builders


def body(event: str, data: Any, **extra: Any) -> str:
    return json.dumps({"event": event, "session": "loja-centro", "data": data, **extra})


def key(
    msg_id: str, remote: str = ANA_PN, *, from_me: bool = False, **extra: Any
) -> dict[str, Any]:
    return {"remoteJid": remote, "fromMe": from_me, "id": msg_id, **extra}


def wa_message(msg_id: str, content: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    k = fields.pop("key", None) or key(msg_id, participant="", addressingMode="pn")
    msg = {"key": k, "messageTimestamp": 1767225600, "pushName": "Ana Souza", **fields}
    if content is not None:
        msg["message"] = content
    return msg


def upsert(*messages: dict[str, Any], kind: str = "notify") -> str:
    return body("messages.upsert", {"messages": list(messages), "type": kind})


def text(value: str = "Oi! Tem no 38?") -> dict[str, Any]:
    return {"conversation": value}


def run(raw: str | bytes, **ctx: Any) -> NormalizeResult:
    context = NormalizeContext(received_at=RECEIVED, correlation_id="test", **ctx)
    return baileys.normalize(raw, context)


def only(raw: str | bytes) -> CanonicalEvent:
    result = run(raw)
    assert not result.errors, result.errors
    assert len(result.events) == 1, result.events
    return result.events[0]


# ---------------------------------------------------------------------------- identity


def test_redelivery_and_reserialization_give_the_same_key() -> None:
    raw = upsert(wa_message("3EB0AA01", text()))
    reserialized = json.dumps(json.loads(raw), indent=3, sort_keys=True)
    first, again, other_order = only(raw), only(raw), only(reserialized)
    assert first.idempotency_key == again.idempotency_key == other_order.idempotency_key
    assert first.event_id == other_order.event_id


def test_different_messages_and_statuses_give_different_keys() -> None:
    a = only(upsert(wa_message("3EB0AA01", text())))
    b = only(upsert(wa_message("3EB0AA02", text())))
    statuses = run(
        body(
            "messages.update",
            [{"key": key("3EB0AA01", from_me=True), "update": {"status": s}} for s in (2, 3, 4)],
        )
    )
    keys = {a.idempotency_key, b.idempotency_key, *(e.idempotency_key for e in statuses.events)}
    assert len(keys) == 5


def test_reaction_upsert_and_messages_reaction_are_one_fact() -> None:
    reactor_key = key("REACT1", GROUP, participant=BRUNO_LID, participantAlt=BRUNO_PN)
    target = key("TARGET1", GROUP, from_me=True)
    via_upsert = only(
        upsert(
            wa_message(
                "REACT1",
                {
                    "reactionMessage": {
                        "key": target,
                        "text": "🔥",
                        "senderTimestampMs": "1767225600123",
                    }
                },
                key=reactor_key,
            )
        )
    )
    long_ms = {"low": 1994041467, "high": 411, "unsigned": False}
    via_event = only(
        body(
            "messages.reaction",
            [
                {
                    "key": target,
                    "reaction": {"key": reactor_key, "text": "🔥", "senderTimestampMs": long_ms},
                }
            ],
        )
    )
    assert via_upsert.idempotency_key == via_event.idempotency_key
    assert via_event.message is not None
    assert via_event.message.reaction is not None
    assert via_event.message.reaction.message_id == "TARGET1"
    assert via_event.message.id == "REACT1"
    assert via_event.actor.wa_id == "5521998877665"
    assert via_event.occurred_at == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)


def test_reaction_removal_and_business_reaction() -> None:
    target = key("TARGET1", ANA_PN, from_me=False)
    events = run(
        body(
            "messages.reaction",
            [
                {"key": target, "reaction": {"key": key("R1", ANA_PN, from_me=True), "text": "👍"}},
                {"key": target, "reaction": {"key": key("R2", ANA_PN, from_me=True)}},
            ],
        )
    ).events
    assert [e.message.reaction.emoji for e in events if e.message and e.message.reaction] == [
        "👍",
        "",
    ]
    assert all(e.actor.role == "business" and e.chat.id == "5511987654321" for e in events)
    assert events[0].idempotency_key != events[1].idempotency_key


def test_revoke_upsert_and_update_stub_are_one_delete() -> None:
    revoke = {"protocolMessage": {"key": key("ORIG1"), "type": "REVOKE"}}
    via_upsert = only(upsert(wa_message("DEL1", revoke)))
    stub = {"message": None, "messageStubType": 1, "key": key("DEL1")}
    via_update = only(body("messages.update", [{"key": key("ORIG1"), "update": stub}]))
    assert via_upsert.idempotency_key == via_update.idempotency_key
    for event in (via_upsert, via_update):
        assert event.event_type == "whatsapp.message.deleted"
        assert event.message is not None
        assert (event.message.target_id, event.message.delete_scope) == ("ORIG1", "everyone")
        assert event.source.provider_message_id == "DEL1"
    numeric_type = {"protocolMessage": {"key": key("ORIG1"), "type": 0}}
    assert (
        only(upsert(wa_message("DEL1", numeric_type))).idempotency_key == via_upsert.idempotency_key
    )


def test_edit_upsert_and_update_are_one_fact_and_new_text_differs() -> None:
    def edit_upsert(new: str) -> str:
        inner = {"key": key("ORIG1"), "type": "MESSAGE_EDIT", "editedMessage": text(new)}
        return upsert(
            wa_message("EDIT1", {"editedMessage": {"message": {"protocolMessage": inner}}})
        )

    update = {
        "message": {"editedMessage": {"message": text("no 39")}},
        "messageTimestamp": 1767225700,
    }
    via_update = only(body("messages.update", [{"key": key("ORIG1"), "update": update}]))
    assert only(edit_upsert("no 39")).idempotency_key == via_update.idempotency_key
    assert only(edit_upsert("no 40")).idempotency_key != via_update.idempotency_key
    assert via_update.message is not None
    assert (via_update.message.text, via_update.message.target_id) == ("no 39", "ORIG1")


# --------------------------------------------------------------------------------- LIDs


def test_v7_lid_addressed_private_chat_uses_the_phone_alternative() -> None:
    k = key("M1", ANA_LID, participant="", remoteJidAlt=ANA_PN, addressingMode="lid")
    event = only(upsert(wa_message("M1", text(), key=k)))
    assert (event.actor.wa_id, event.actor.lid) == ("5511987654321", "187362847263912")
    assert (event.chat.id, event.chat.lid) == ("5511987654321", "187362847263912")


def test_v67_sender_pn_and_group_participant_pn() -> None:
    private = only(upsert(wa_message("M1", text(), key=key("M1", ANA_LID, senderPn=ANA_PN))))
    assert private.chat.id == "5511987654321"
    group_key = key("M2", GROUP, participant=BRUNO_LID, participantPn=BRUNO_PN)
    group = only(upsert(wa_message("M2", text(), key=group_key)))
    assert (group.chat.type, group.chat.id) == ("group", GROUP)
    assert (group.actor.wa_id, group.actor.lid) == ("5521998877665", "246813579024681")


def test_lid_only_sender_and_top_level_participant() -> None:
    lid_only = only(upsert(wa_message("M1", text(), key=key("M1", ANA_LID, participant=""))))
    assert lid_only.actor.wa_id == "lid:187362847263912"
    assert "actor_lid_only" in lid_only.security.risk_flags
    top_level = only(upsert(wa_message("M2", text(), key=key("M2", GROUP), participant=BRUNO_PN)))
    assert top_level.actor.wa_id == "5521998877665"


def test_empty_participant_is_absent_in_private_chats() -> None:
    event = only(upsert(wa_message("M1", text(), key=key("M1", participant=""))))
    assert event.actor.wa_id == event.chat.id == "5511987654321"


# ------------------------------------------------------------------ flavours and times


@pytest.mark.parametrize(
    "stamp",
    [1767225600, "1767225600", 1767225600000, {"low": 1767225600, "high": 0, "unsigned": True}],
    ids=["int", "string", "millis", "long"],
)
def test_timestamp_spellings(stamp: Any) -> None:
    event = only(upsert(wa_message("M1", text(), messageTimestamp=stamp)))
    assert event.occurred_at == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "value"),
    [(0, "failed"), ("PENDING", "queued"), (2, "sent"), ("DELIVERY_ACK", "delivered"),
     (4, "read"), ("PLAYED", "played")],
)  # fmt: skip
def test_status_numbers_and_names(status: Any, value: str) -> None:
    event = only(
        body("messages.update", [{"key": key("M1", from_me=True), "update": {"status": status}}])
    )
    assert event.status is not None
    assert event.status.value == value
    assert event.event_type == f"whatsapp.message.status.{value}"


def test_receipt_time_in_update_is_the_status_time() -> None:
    update = {"status": 4, "messageTimestamp": 1767225700}
    event = only(body("messages.update", [{"key": key("M1", from_me=True), "update": update}]))
    assert event.occurred_at == datetime(2026, 1, 1, 0, 1, 40, tzinfo=UTC)
    assert event.actor.wa_id == "5511987654321"
    assert event.status is not None
    assert event.status.recipient_wa_id == "5511987654321"


def test_status_inside_an_upsert_is_not_a_status_event() -> None:
    own = wa_message("M1", text(), key=key("M1", from_me=True), status="PENDING")
    event = only(upsert(own, kind="append"))
    assert event.event_type == "whatsapp.message.outbound"
    assert event.actor.role == "business"


def test_group_receipts_carry_the_participant_in_status_and_identity() -> None:
    receipts = [
        {
            "key": key("M1", GROUP, from_me=True),
            "receipt": {"userJid": who, "readTimestamp": 1767225700},
        }
        for who in (ANA_PN, BRUNO_LID)
    ]
    events = run(body("message-receipt.update", receipts)).events
    assert [e.status.participant for e in events if e.status] == [
        "5511987654321",
        "lid:246813579024681",
    ]
    assert events[0].idempotency_key != events[1].idempotency_key


# ----------------------------------------------------------------- ignores and errors


@pytest.mark.parametrize(
    "message",
    [
        wa_message(
            "M1", None, messageStubType=2, messageStubParameters=["Message absent from node"]
        ),
        wa_message("M1", None, messageStubType="CIPHERTEXT"),
        wa_message("M1", {}),
        wa_message("M1", text(), key=key("M1", "status@broadcast", participant=ANA_PN)),
        wa_message("M1", text(), key=key("M1", "120363198765432101@newsletter")),
        wa_message("M1", None, messageStubType="GROUP_PARTICIPANT_ADD", key=key("M1", GROUP)),
        wa_message("M1", {"pollUpdateMessage": {"vote": {"encPayload": "AAA=", "encIv": "BBB="}}}),
        wa_message("M1", {"protocolMessage": {"type": "HISTORY_SYNC_NOTIFICATION"}}),
    ],
    ids=[
        "ciphertext",
        "ciphertext-name",
        "empty",
        "status",
        "newsletter",
        "group-stub",
        "vote",
        "protocol",
    ],
)
def test_nothing_canonical_is_ignored(message: dict[str, Any]) -> None:
    result = run(upsert(message))
    assert (result.events, result.errors, result.ignored) == ([], [], 1)


@pytest.mark.parametrize(
    "event",
    ["presence.update", "chats.upsert", "messaging-history.set", "creds.update", "labels.edit"],
)
def test_other_events_are_ignored(event: str) -> None:
    result = run(body(event, {"anything": [1, 2, 3]}))
    assert (result.events, result.errors, result.ignored) == ([], [], 1)


def test_qr_only_connection_update_and_delete_all_are_ignored() -> None:
    assert run(body("connection.update", {"qr": "2@abc"})).ignored == 1
    assert run(body("messages.delete", {"jid": ANA_PN, "all": True})).ignored == 1


def test_batch_with_broken_items_keeps_the_good_ones() -> None:
    broken = [
        wa_message("OK1", text()),
        wa_message("BAD1", text(), messageTimestamp=[1]),
        wa_message("", text()),
        wa_message("OK2", {"imageMessage": {"caption": 5}}),
    ]
    result = run(upsert(*broken))
    assert [e.message.id for e in result.events if e.message] == ["OK1"]
    assert [e.path for e in result.errors] == [
        "$.data.messages[1].messageTimestamp",
        "$.data.messages[2]",
        "$.data.messages[3].message.imageMessage.caption",
    ]
    assert all(e.provider_event == "messages.upsert" for e in result.errors)


def test_unknown_status_is_an_error_with_its_path() -> None:
    result = run(body("messages.update", [{"key": key("M1"), "update": {"status": 9}}]))
    assert [e.path for e in result.errors] == ["$.data[0]"]


def test_missing_session_is_an_error_unless_an_account_is_passed() -> None:
    raw = json.dumps({"event": "messages.upsert", "data": {"messages": [wa_message("M1", text())]}})
    assert [e.path for e in run(raw).errors] == ["$.session"]
    assert run(raw, account="loja-sul").events[0].source.account_id == "loja-sul"


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[]", b'{"event": 5}', b"[" * 5000 + b"]" * 5000,
     body("messages.upsert", {"messages": [wa_message("M1", text(), messageTimestamp=10**400)]}),
     body("call", [{"id": "C1", "status": "offer", "date": "not a date"}])],
)  # fmt: skip
def test_garbage_never_raises(raw: str | bytes) -> None:
    run(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(event=st.sampled_from(sorted(baileys._HANDLERS)), data=json_values)
def test_arbitrary_data_never_raises(event: str, data: Any) -> None:
    run(body(event, data))


@settings(max_examples=100, deadline=None)
@given(
    content=st.dictionaries(
        st.sampled_from(
            ["conversation", "imageMessage", "protocolMessage", "reactionMessage", "editedMessage"]
        ),
        json_values,
    )
)
def test_arbitrary_content_never_raises(content: dict[str, Any]) -> None:
    run(upsert(wa_message("M1", content)))


# --------------------------------------------------- groups, contacts, connection, calls


def test_group_participants_v6_strings_and_v7_objects_agree() -> None:
    v6 = {"id": GROUP, "author": ANA_PN, "participants": [BRUNO_PN], "action": "add"}
    v7 = {**v6, "participants": [{"id": BRUNO_LID, "phoneNumber": BRUNO_PN, "admin": None}]}
    a, b = (
        only(body("group-participants.update", v6, sent_at=1)),
        only(body("group-participants.update", v7, sent_at=1)),
    )
    assert a.group is not None
    assert b.group is not None
    assert a.group.participants == b.group.participants == ["5521998877665"]
    assert a.idempotency_key == b.idempotency_key
    assert a.event_type == "whatsapp.group.joined"
    removed = only(body("group-participants.update", {**v6, "action": "remove"}))
    assert removed.event_type == "whatsapp.group.left"


def test_contacts_map_each_and_skip_group_icons() -> None:
    contacts = [
        {"id": ANA_PN, "lid": ANA_LID, "phoneNumber": ANA_PN, "name": "Ana Souza"},
        {"id": GROUP, "imgUrl": "changed"},
    ]
    result = run(body("contacts.upsert", contacts))
    assert result.ignored == 1
    (event,) = result.events
    assert event.contact is not None
    assert (event.contact.wa_id, event.contact.lid) == ("5511987654321", "187362847263912")


def test_connection_uses_sent_at_and_reason_code() -> None:
    close = {"connection": "close", "lastDisconnect": {"error": {"output": {"statusCode": 428}}}}
    event = only(body("connection.update", close, sent_at=1767225600123))
    assert event.connection is not None
    assert event.connection.reason == "428"
    assert event.occurred_at == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    later = only(body("connection.update", close, sent_at=1767225900000))
    assert later.idempotency_key != event.idempotency_key


def test_group_call_uses_the_group_chat() -> None:
    call = {"id": "C1", "from": BRUNO_LID, "callerPn": BRUNO_PN, "status": "offer",
            "isGroup": True, "groupJid": GROUP, "isVideo": True}  # fmt: skip
    event = only(body("call", [call]))
    assert (event.chat.type, event.chat.id) == ("group", GROUP)
    assert event.call is not None
    assert (event.call.video, event.call.group) == (True, True)
    assert event.actor.wa_id == "5521998877665"


# ------------------------------------------------------------------------- signature


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_python_verifies_the_bridge_signature() -> None:
    """The receiver's HMAC over the raw bytes equals what the Node bridge sends."""
    secret = "segredo-da-loja"
    script = (
        f"import {{ serialize, sign }} from {json.dumps(BRIDGE.as_uri())};"
        "const body = serialize('messages.upsert', 'loja-centro',"
        " {type: 'notify', messages: [{key: {id: 'M1'}, message: {conversation: 'Olá 👋'}}]}, 1);"
        f"const signature = sign(body, {json.dumps(secret)});"
        "process.stdout.write(JSON.stringify({body, signature}));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, check=True, timeout=30
    )
    sent = json.loads(out.stdout)
    raw = sent["body"].encode("utf-8")
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, sent["signature"])
    assert run(raw).events[0].message is not None


def test_delivery_update_of_our_group_message_without_a_reader_is_the_systems() -> None:
    update = {"key": key("M9", GROUP, from_me=True), "update": {"status": 3}}
    event = only(body("messages.update", [update]))
    assert event.event_type == "whatsapp.message.status.delivered"
    assert event.actor.role == "system"
    assert event.actor.wa_id is None


@pytest.mark.parametrize("sent_at", [-5, 99_999_999_999_999, 10**20, "soon"])
def test_an_implausible_sent_at_never_puts_the_time_of_receipt_in_identities(
    sent_at: Any,
) -> None:
    """Events without ids of their own are identified by the bridge's ``sent_at``; when
    that is not a plausible time it stands in for nothing in the key (the event keeps the
    time of receipt as ``occurred_at``, flagged), so a redelivery is still a duplicate."""
    close = {"connection": "close", "lastDisconnect": {"error": {"output": {"statusCode": 428}}}}
    raw = body("connection.update", close, sent_at=sent_at)
    first = baileys.normalize(raw, NormalizeContext(received_at=RECEIVED, correlation_id="a"))
    later = RECEIVED + timedelta(minutes=3)
    again = baileys.normalize(raw, NormalizeContext(received_at=later, correlation_id="b"))
    (one,), (two,) = first.events, again.events
    assert one.idempotency_key == two.idempotency_key
    assert one.occurred_at == RECEIVED
    assert "timestamp_out_of_range" in one.security.risk_flags

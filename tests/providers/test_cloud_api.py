"""Focused behaviours of the Cloud API normalizer (the golden fixtures cover whole shapes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wacanon.providers.cloud_api import normalize
from wacanon.providers.common import NormalizeContext, NormalizeResult

RECEIVED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PNID = "106540352242922"
ANA = "5511987654321"
BRUNO = "5521998765432"
BSUID = "BR.1502576394655843"
GROUP = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"


# ----------------------------------------------------------------------- builders


def run(payload: Any, *, account: str | None = None, raw: bool = False) -> NormalizeResult:
    ctx = NormalizeContext(received_at=RECEIVED_AT, correlation_id="test", account=account)
    body = payload if raw else json.dumps(payload, ensure_ascii=False)
    return normalize(body, ctx)


def envelope(*entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": list(changes)} for changes in entries],
    }


def change(field: str = "messages", *, metadata: bool = True, **arrays: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp", **arrays}
    if metadata:
        value["metadata"] = {"display_phone_number": "5511940028922", "phone_number_id": PNID}
    return {"field": field, "value": value}


def contact(wa_id: str | None = ANA, *, name: str = "Ana Souza", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"profile": {"name": name, **extra.pop("profile", {})}, **extra}
    if wa_id:
        item["wa_id"] = wa_id
    return item


def message(
    n: int, *, sender: str | None = ANA, kind: str = "text", ts: Any = "1772366400", **extra: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": f"wamid.MSG{n}", "timestamp": ts, "type": kind}
    if sender is not None:
        item["from"] = sender
    if kind == "text" and "text" not in extra:
        item["text"] = {"body": f"mensagem {n}"}
    item.update(extra)
    return item


def status(n: int, value: str, *, recipient: str | None = ANA, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": f"wamid.MSG{n}", "status": value, "timestamp": "1772366500"}
    if recipient is not None:
        item["recipient_id"] = recipient
    item.update(extra)
    return item


def one_message(*messages: dict[str, Any], **arrays: Any) -> dict[str, Any]:
    return envelope([change(contacts=[contact()], messages=list(messages), **arrays)])


def keys(result: NormalizeResult) -> list[str]:
    return [e.idempotency_key for e in result.events]


# ----------------------------------------------------------------------- batching


def test_batch_of_two_entries_gives_every_event_in_order() -> None:
    payload = envelope(
        [
            change(contacts=[contact()], messages=[message(1), message(2), message(3)]),
            change(statuses=[status(90, "delivered"), status(90, "read")]),
        ],
        [
            change(contacts=[contact(BRUNO)], messages=[message(4, sender=BRUNO)]),
            change(statuses=[status(91, "sent", recipient=BRUNO), status(92, "failed")]),
        ],
    )
    result = run(payload)
    assert result.errors == []
    assert result.ignored == 0
    assert [
        (e.event_type.rsplit(".", 1)[-1], e.source.provider_message_id) for e in result.events
    ] == [
        ("inbound", "wamid.MSG1"),
        ("inbound", "wamid.MSG2"),
        ("inbound", "wamid.MSG3"),
        ("delivered", "wamid.MSG90"),
        ("read", "wamid.MSG90"),
        ("inbound", "wamid.MSG4"),
        ("sent", "wamid.MSG91"),
        ("failed", "wamid.MSG92"),
    ]
    assert {e.source.account_id for e in result.events} == {PNID}
    assert len(set(keys(result))) == 8


def test_other_fields_are_ignored_one_per_change() -> None:
    payload = envelope(
        [
            {"field": "message_template_status_update", "value": {"event": "APPROVED"}},
            change("user_preferences", user_preferences=[{"wa_id": ANA, "value": "stop"}]),
            change(user_actions=[{"action_type": "marketing_messages_link_click"}]),
            change(contacts=[contact()], messages=[message(1)]),
        ]
    )
    result = run(payload)
    assert (len(result.events), result.ignored, result.errors) == (1, 3, [])


def test_value_level_errors_are_meta_facts_not_normalization_errors() -> None:
    error = {
        "code": 130429,
        "title": "Rate limit hit",
        "message": "Rate limit hit",
        "error_data": {"details": "Cloud API message throughput has been reached."},
    }
    result = run(envelope([change(errors=[error])]))
    assert (result.events, result.ignored, result.errors) == ([], 1, [])


def test_value_level_errors_explain_an_unsupported_message() -> None:
    error = {"code": 131051, "title": "Message type unknown", "message": "Message type unknown"}
    unknown = message(7, kind="interactive")
    result = run(envelope([change(messages=[unknown], errors=[error])]))
    (event,) = result.events
    assert event.message is not None
    assert event.message.type == "unsupported"
    assert [(e.code, e.title) for e in event.message.errors] == [("131051", "Message type unknown")]
    assert result.errors == []


def test_account_id_is_phone_number_id_unless_overridden() -> None:
    assert run(one_message(message(1))).events[0].source.account_id == PNID
    assert run(one_message(message(1)), account="loja-1").events[0].source.account_id == "loja-1"


def test_missing_metadata_without_account_is_an_error() -> None:
    payload = envelope([change(metadata=False, messages=[message(1)])])
    result = run(payload)
    assert result.events == []
    assert result.errors[0].path == "$.entry[0].changes[0].value.metadata"
    assert "pass --account" in result.errors[0].message
    assert len(run(payload, account="loja-1").events) == 1


# ----------------------------------------------------------------------- identity


def test_redelivery_gives_the_same_keys() -> None:
    payload = envelope([change(contacts=[contact()], messages=[message(1)], statuses=[])])
    payload["entry"][0]["changes"].append(change(statuses=[status(9, "read")]))
    first, second = run(payload), run(payload)
    assert keys(first) == keys(second)
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]


def test_reserialized_payload_gives_the_same_keys() -> None:
    payload = one_message(
        message(1, context={"id": "wamid.MSG0"}),
        message(2, kind="reaction", reaction={"message_id": "wamid.MSG0", "emoji": "👍"}),
    )
    compact = json.dumps(payload, separators=(",", ":"))
    reordered = json.dumps(_reverse_keys(payload), indent=4, ensure_ascii=True)
    assert compact != reordered
    a, b = run(compact, raw=True), run(reordered, raw=True)
    assert len(a.events) == 2
    assert keys(a) == keys(b)


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


def test_different_facts_give_different_keys() -> None:
    statuses = [status(9, "delivered"), status(9, "read"), status(10, "read")]
    result = run(envelope([change(statuses=statuses)]))
    assert len(set(keys(result))) == 3


def test_received_at_is_not_part_of_the_key() -> None:
    payload = json.dumps(one_message(message(1)))
    later = NormalizeContext(received_at=datetime(2026, 3, 2, tzinfo=UTC), correlation_id="x")
    assert keys(run(payload, raw=True)) == keys(normalize(payload, later))


def test_status_before_its_message_is_just_a_status_event() -> None:
    result = run(envelope([change(statuses=[status(7, "read")])]))
    [event] = result.events
    assert event.event_type == "whatsapp.message.status.read"
    assert event.message is None
    assert event.status is not None
    assert (event.status.message_id, event.status.recipient_wa_id) == ("wamid.MSG7", ANA)
    assert event.actor.role == "customer"
    assert (event.chat.type, event.chat.id) == ("private", ANA)


def test_sent_and_failed_statuses_are_by_the_system_with_errors_normalized() -> None:
    error = {
        "code": 131049,
        "title": "This message was not delivered",
        "message": "This message was not delivered",
        "error_data": {"details": "Healthy ecosystem engagement."},
    }
    result = run(
        envelope([change(statuses=[status(1, "sent"), status(2, "failed", errors=[error])])])
    )
    sent, failed = result.events
    assert sent.actor.role == failed.actor.role == "system"
    assert failed.status is not None
    assert [e.model_dump() for e in failed.status.errors] == [
        {
            "code": "131049",
            "title": "This message was not delivered",
            "detail": "Healthy ecosystem engagement.",
        }
    ]


def test_deleted_and_unknown_statuses_are_ignored() -> None:
    result = run(envelope([change(statuses=[status(1, "deleted"), status(2, "warning")])]))
    assert (result.events, result.ignored, result.errors) == ([], 2, [])


# ----------------------------------------------------------------------- BSUID


def test_bsuid_only_message() -> None:
    payload = envelope(
        [
            change(
                contacts=[contact(None, user_id=BSUID, profile={"username": "@anasouza"})],
                messages=[message(1, sender=None, from_user_id=BSUID)],
            )
        ]
    )
    [event] = run(payload).events
    assert event.actor.wa_id == f"bsuid:{BSUID}"
    assert event.actor.user_id == BSUID
    assert event.actor.username == "@anasouza"
    assert event.actor.display_name == "Ana Souza"
    assert (event.chat.id, event.chat.user_id, event.chat.phone) == (f"bsuid:{BSUID}", BSUID, None)
    assert "actor_bsuid_only" in event.security.risk_flags


def test_phone_and_bsuid_together() -> None:
    payload = envelope(
        [change(contacts=[contact(user_id=BSUID)], messages=[message(1, from_user_id=BSUID)])]
    )
    [event] = run(payload).events
    assert (event.actor.wa_id, event.actor.user_id) == (ANA, BSUID)
    assert (event.chat.id, event.chat.user_id, event.chat.phone) == (ANA, BSUID, ANA)


def test_contact_joined_by_bsuid_supplies_the_phone() -> None:
    payload = envelope(
        [
            change(
                contacts=[contact(user_id=BSUID)],
                messages=[message(1, sender=None, from_user_id=BSUID)],
            )
        ]
    )
    [event] = run(payload).events
    assert (event.actor.wa_id, event.actor.user_id) == (ANA, BSUID)


def test_bsuid_in_a_phone_field_is_taken_as_a_bsuid() -> None:
    [event] = run(one_message(message(1, sender=BSUID))).events
    assert (event.actor.wa_id, event.actor.user_id) == (f"bsuid:{BSUID}", BSUID)


def test_status_to_a_bsuid() -> None:
    result = run(
        envelope(
            [change(statuses=[status(1, "delivered", recipient=None, recipient_user_id=BSUID)])]
        )
    )
    [event] = result.events
    assert event.status is not None
    assert (event.status.recipient_wa_id, event.status.recipient_user_id) == (
        f"bsuid:{BSUID}",
        BSUID,
    )
    assert event.chat.id == f"bsuid:{BSUID}"


def test_phone_digits_are_normalized() -> None:
    [event] = run(envelope([change(messages=[message(1, sender="+55 (11) 98765-4321")])])).events
    assert event.actor.wa_id == ANA
    assert event.chat.id == ANA


def test_message_without_any_sender_is_an_error() -> None:
    result = run(envelope([change(messages=[message(1, sender=None)])]))
    assert result.events == []
    assert result.errors[0].path == "$.entry[0].changes[0].value.messages[0]"


# ----------------------------------------------------------------------- message kinds


def test_reaction_removal_empty_or_missing_emoji() -> None:
    target = {"message_id": "wamid.MSG0"}
    added = message(1, kind="reaction", reaction={**target, "emoji": "❤️"})
    empty = message(2, kind="reaction", reaction={**target, "emoji": ""})
    missing = message(3, kind="reaction", reaction=target)
    result = run(one_message(added, empty, missing))
    assert [e.event_type for e in result.events] == ["whatsapp.message.reaction"] * 3
    emojis = [e.message.reaction.emoji for e in result.events if e.message and e.message.reaction]
    assert emojis == ["❤️", "", ""]
    assert {
        e.message.reaction.message_id for e in result.events if e.message and e.message.reaction
    } == {"wamid.MSG0"}
    assert [e.message.id for e in result.events if e.message] == [
        "wamid.MSG1",
        "wamid.MSG2",
        "wamid.MSG3",
    ]
    k = keys(result)
    assert k[1] == k[2]  # the same removal, however Meta spells it
    assert k[0] != k[1]


def test_unknown_type_is_unsupported_not_an_error() -> None:
    [event] = run(one_message(message(1, kind="poll", poll={"question": "?"}))).events
    assert event.message is not None
    assert (event.message.type, event.message.provider_type) == ("unsupported", "poll")


def test_group_message_sender_is_the_actor() -> None:
    [event] = run(one_message(message(1, group_id=GROUP))).events
    assert (event.chat.type, event.chat.id) == ("group", GROUP)
    assert (event.actor.wa_id, event.actor.role) == (ANA, "customer")


def test_group_receipts_are_keyed_by_participant_in_both_spellings() -> None:
    receipts = [
        status(1, "read", recipient=GROUP, recipient_type="group", recipient_participant_id=ANA),
        status(1, "read", recipient=GROUP, recipient_type="group", participant_recipient_id=BRUNO),
    ]
    result = run(envelope([change(statuses=receipts)]))
    assert [e.status.participant for e in result.events if e.status] == [ANA, BRUNO]
    assert {e.chat.id for e in result.events} == {GROUP}
    assert len(set(keys(result))) == 2


def test_echo_is_outbound_to_the_customer() -> None:
    echo = message(1, sender="5511940028922", to=ANA)
    [event] = run(envelope([change("smb_message_echoes", message_echoes=[echo])])).events
    assert event.event_type == "whatsapp.message.outbound"
    assert (event.actor.role, event.actor.wa_id) == ("business", "5511940028922")
    assert event.chat.id == ANA
    assert event.source.provider_event == "smb_message_echoes"


def test_echo_and_inbound_of_one_id_do_not_collide_with_a_status() -> None:
    result = run(
        envelope(
            [change(contacts=[contact()], messages=[message(1)], statuses=[status(1, "read")])]
        )
    )
    assert len(set(keys(result))) == 2


# ----------------------------------------------------------------------- broken input


def test_batch_with_malformed_items_keeps_the_others() -> None:
    bad_time = message(2, ts={})
    no_id = message(3)
    del no_id["id"]
    result = run(one_message(message(1), bad_time, no_id, message(4)))
    assert [e.message.id for e in result.events if e.message] == ["wamid.MSG1", "wamid.MSG4"]
    assert [e.path for e in result.errors] == [
        "$.entry[0].changes[0].value.messages[1].timestamp",
        "$.entry[0].changes[0].value.messages[2]",
    ]
    assert "id" in result.errors[1].message
    assert all(e.provider_event == "messages" for e in result.errors)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ("[]", "$"),
        ('"x"', "$"),
        ("null", "$"),
        ("42", "$"),
        ("{}", "$"),
        ('{"entry": 5}', "$.entry"),
        ('{"entry": [5]}', "$.entry[0]"),
        ('{"entry": [{"changes": {}}]}', "$.entry[0].changes"),
        (
            '{"entry": [{"changes": [{"field": "messages", "value": []}]}]}',
            "$.entry[0].changes[0].value",
        ),
        ("{not json", "$"),
        ("[" * 100_000, "$"),
    ],
)
def test_arbitrary_json_gives_error_values(body: str, path: str) -> None:
    result = run(body, raw=True)
    assert result.events == []
    assert [e.path for e in result.errors] == [path]


def test_lone_surrogate_text_body_is_an_error_value() -> None:
    assert run('{"entry": "\ud83d"}', raw=True).errors[0].path == "$"


def test_huge_and_odd_numbers_never_raise() -> None:
    item = message(1, ts=10**40, kind="location", location={"latitude": 1e308, "longitude": "nan"})
    [event] = run(one_message(item)).events
    assert event.occurred_at == RECEIVED_AT
    assert event.message is not None
    assert event.message.location is not None
    assert event.message.location.longitude is None


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_SLOTS = ("from", "id", "timestamp", "type", "text", "reaction", "context", "errors", "contacts")


@settings(max_examples=200, deadline=None)
@given(
    junk=_JSON, slot=st.sampled_from(_SLOTS), kind=st.sampled_from(["text", "reaction", "contacts"])
)
def test_junk_anywhere_in_a_message_never_raises(junk: Any, slot: str, kind: str) -> None:
    item = message(1, kind=kind)
    item[slot] = junk
    result = run(one_message(item, message(2)))
    assert len(result.events) + len(result.errors) >= 1
    assert "wamid.MSG2" in [e.message.id for e in result.events if e.message]


@settings(max_examples=200, deadline=None)
@given(junk=_JSON)
def test_junk_bodies_never_raise(junk: Any) -> None:
    result = run(junk)
    assert isinstance(result, NormalizeResult)


@pytest.mark.parametrize("ts", ["99999999999999999", "-5", "0", "soon", 1e300])
def test_an_implausible_timestamp_becomes_received_at_with_a_risk_flag(ts: Any) -> None:
    (event,) = run(one_message(message(1, ts=ts))).events
    assert event.occurred_at == RECEIVED_AT
    assert type(event.occurred_at) is datetime
    assert "timestamp_out_of_range" in event.security.risk_flags
    (again,) = run(one_message(message(1, ts=ts))).events
    assert again.idempotency_key == event.idempotency_key


def test_a_plausible_or_missing_timestamp_has_no_such_flag() -> None:
    (event,) = run(one_message(message(1))).events
    assert "timestamp_out_of_range" not in event.security.risk_flags
    payload = one_message(message(1))
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"]
    (event,) = run(payload).events
    assert event.occurred_at == RECEIVED_AT
    assert "timestamp_out_of_range" not in event.security.risk_flags

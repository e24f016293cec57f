"""The projection, pure: real Evolution webhooks through the real normalizer, applied in
order to an in-memory state (the store's part is tested live in tests/ingest)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

from tests.routing.events import (
    LID,
    PHONE,
    SHOPPER,
    T0,
    cloud_change,
    cloud_text,
    customer_edit_body,
    group_body,
    status_body,
    stored,
    text_body,
)
from wacanon.routing.facts import StoredEvent
from wacanon.routing.project import Projection
from wacanon.routing.state import Conversation, RoutingState

PN = f"{PHONE}@s.whatsapp.net"
LJ = f"{LID}@lid"
GROUP = "120363025246125888@g.us"
DAY = 24 * 3600


def project(*events: StoredEvent, window: timedelta = timedelta(hours=24)) -> Projection:
    projection = Projection(RoutingState(), lambda _: window)
    for row_id, event in enumerate(events, start=1):
        projection.apply(row_id, event)
    return projection


def live(p: Projection) -> list[Conversation]:
    return [c for c in p.state.by_id.values() if c.status != "merged"]


def routed_to(p: Projection) -> dict[int, str]:
    return {row: p.state.current(c).id for row, c in p.state.routes.items()}


def test_a_lid_born_conversation_continues_unsplit_when_the_phone_appears() -> None:
    p = project(
        *stored(
            text_body("M1", LJ),  # LID only (addressingMode lid, no alternative)
            text_body("M2", PN, LJ),  # the phone, with the LID beside it: a link
            text_body("M3", PN),  # the phone alone
        )
    )
    (conversation,) = live(p)
    assert conversation.thread_key == f"whatsapp:lid:{LID}|shopper:{SHOPPER}|group:null"
    assert set(routed_to(p).values()) == {conversation.id}
    assert p.state.identities == {
        (SHOPPER, f"lid:{LID}"): f"lid:{LID}",
        (SHOPPER, PHONE): f"lid:{LID}",
    }
    assert [e.kind for e in p.state.emitted] == ["opened"]


def test_a_link_between_two_conversations_merges_them_into_the_older() -> None:
    p = project(
        *stored(
            text_body("M1", LJ, at=T0),
            text_body("M2", PN, at=T0 + 60),  # nothing links it yet: a second customer
            text_body("M3", PN, LJ, at=T0 + 120),
        )
    )
    (keep,) = live(p)
    absorbed = next(c for c in p.state.by_id.values() if c.status == "merged")
    assert keep.thread_key.startswith(f"whatsapp:lid:{LID}|")
    assert absorbed.thread_key == f"whatsapp:{PHONE}|shopper:{SHOPPER}|group:null"
    assert absorbed.merged_into == keep.id
    assert p.state.merges == [(keep.id, absorbed.id)]
    assert set(routed_to(p).values()) == {keep.id}
    merged = [e for e in p.state.emitted if e.kind == "merged"]
    assert len(merged) == 1
    assert merged[0].absorbed is absorbed
    assert all(m.conversation_id == keep.id for m in p.state.messages.values())


def test_statuses_only_move_forward_and_failed_is_final() -> None:
    p = project(
        *stored(
            text_body("M1", PN, from_me=True),
            status_body("M1", PN, "READ", at=T0 + 20),
            status_body("M1", PN, "DELIVERY_ACK", at=T0 + 10),  # late, and behind
        )
    )
    (message,) = p.state.messages.values()
    assert (message.status, message.direction) == ("read", "outbound")
    failed = project(
        *stored(
            status_body("M2", PN, "ERROR", at=T0),
            status_body("M2", PN, "READ", at=T0 + 5),
        )
    )
    assert next(iter(failed.state.messages.values())).status == "failed"


def test_a_status_before_its_message_is_indexed_then_completed_by_it() -> None:
    p = project(*stored(status_body("M1", PN, "READ"), text_body("M1", PN, from_me=True)))
    (message,) = p.state.messages.values()
    assert (message.status, message.direction, message.type) == ("read", "outbound", "text")
    assert len(set(routed_to(p).values())) == 1


def test_an_edit_without_its_chat_waits_for_the_message_and_joins_it() -> None:
    p = project(*stored(customer_edit_body("M1", at=T0 + 30)))
    assert p.state.routes == {}
    assert len(p.state.new_waiters) == 1
    # The message arrives later (in the same batch here; across batches the store keeps
    # the waiter): the waiting edit joins its conversation.
    p.apply(2, stored(text_body("M1", PN))[0])
    assert routed_to(p)[1] == routed_to(p)[2]
    assert p.state.resolved_waiters == [1]
    (c,) = live(p)  # applied in full, not only routed: the edit's time counts
    assert c.last_event_at == c.opened_at + timedelta(seconds=30)


def test_first_response_is_the_first_outbound_after_the_first_inbound() -> None:
    p = project(
        *stored(
            text_body("M0", PN, from_me=True, at=T0),  # a campaign before the customer wrote
            text_body("M1", PN, at=T0 + 60),
            text_body("M2", PN, from_me=True, at=T0 + 120),
            text_body("M3", PN, from_me=True, at=T0 + 180),
        )
    )
    (c,) = live(p)
    assert c.first_inbound_at is not None
    assert c.first_response_at is not None
    assert c.first_response_at - c.first_inbound_at == timedelta(seconds=60)


def test_silence_past_the_window_closes_at_the_idle_moment_and_a_message_reopens() -> None:
    p = project(*stored(text_body("M1", PN, at=T0), text_body("M2", PN, at=T0 + DAY + 3600)))
    (c,) = live(p)
    kinds = [(e.kind, e.reason, e.opening) for e in p.state.emitted]
    assert kinds == [
        ("opened", "first_event", 1),
        ("closed", "inactivity", 1),
        ("opened", "reopened", 2),
    ]
    closed = p.state.emitted[1]
    assert closed.at - p.state.emitted[0].at == timedelta(hours=24)
    assert (c.status, c.opens, c.closed_at) == ("open", 2, None)


def test_the_idle_job_closes_at_the_idle_moment_not_now() -> None:
    p = project(*stored(text_body("M1", PN, at=T0)))
    (c,) = live(p)
    p.close_idle([c], now=c.opened_at + timedelta(days=3))
    assert c.status == "closed"
    assert c.closed_at == c.opened_at + timedelta(hours=24)
    p.close_idle([c], now=c.opened_at + timedelta(days=4))  # closed once
    assert [e.kind for e in p.state.emitted].count("closed") == 1


def test_a_late_old_message_does_not_reopen() -> None:
    p = project(*stored(text_body("M1", PN, at=T0)))
    (c,) = live(p)
    p.close_idle([c], now=c.opened_at + timedelta(days=2))
    p.apply(9, stored(text_body("M0", PN, at=T0 + 60))[0])  # sent before it closed
    assert c.status == "closed"
    assert c.opens == 1


def test_group_members_follow_joins_and_leaves() -> None:
    member = "5521998765432@s.whatsapp.net"
    p = project(
        *stored(
            group_body(GROUP, "add", [member], at=T0),
            text_body("G1", GROUP, participant=member, at=T0 + 10),
            group_body(GROUP, "remove", [member], at=T0 + 20),
        )
    )
    (c,) = live(p)
    assert c.thread_key == f"whatsapp:group:{GROUP}|shopper:{SHOPPER}"
    (person,) = [x for x in p.state.participants.values() if x.wa_id == "5521998765432"]
    assert person.left_at is not None
    assert person.role == "member"


def test_one_customer_through_two_accounts_of_a_shopper_is_one_conversation() -> None:
    first, second = stored(text_body("M1", PN), text_body("M2", PN))
    other_account = msgspec.structs.replace(second.source, account_id="loja-shopping")
    second = msgspec.structs.replace(second, source=other_account)
    p = project(first, second)
    assert len(live(p)) == 1
    assert len(set(routed_to(p).values())) == 1


def _cloud(*bodies: dict[str, Any]) -> list[StoredEvent]:
    return stored(*bodies, provider="cloud_api")


def test_a_bsuid_change_keeps_the_customer_and_its_conversation() -> None:
    p = project(
        *_cloud(
            cloud_text("wamid.A1", from_user_id="BR.1502576394655843"),
            cloud_change(
                "user_id_update",
                {
                    "user_id_update": [
                        {
                            "user_id": {
                                "previous": "BR.1502576394655843",
                                "current": "BR.7730019284756612",
                            },
                            "timestamp": "1772366500",
                        }
                    ]
                },
            ),
            cloud_text("wamid.A2", from_user_id="BR.7730019284756612"),
        )
    )
    (c,) = live(p)
    assert c.thread_key == f"whatsapp:bsuid:BR.1502576394655843|shopper:{SHOPPER}|group:null"
    assert len(set(routed_to(p).values())) == 1


def test_a_changed_number_keeps_the_customer_and_its_conversation() -> None:
    changed = {
        "from": "5511987654321",
        "id": "wamid.SYS1",
        "timestamp": "1772366450",
        "type": "system",
        "system": {
            "body": "Ana mudou de 5511987654321 para 5511912345678",
            "wa_id": "5511912345678",
            "type": "user_changed_number",
        },
    }
    p = project(
        *_cloud(
            cloud_text("wamid.B1", **{"from": "5511987654321"}),
            cloud_change("messages", {"messages": [changed]}),
            cloud_text("wamid.B2", **{"from": "5511912345678"}),
        )
    )
    (c,) = live(p)
    assert c.thread_key == f"whatsapp:5511987654321|shopper:{SHOPPER}|group:null"
    assert len(set(routed_to(p).values())) == 1


def test_a_merge_into_a_closed_conversation_reopens_it_when_the_customer_talks_elsewhere() -> None:
    old, new = "5511987654321", "5511912345678"
    p = project(*_cloud(cloud_text("wamid.C1", **{"from": old})))
    (first,) = live(p)
    p.close_idle([first], now=first.opened_at + timedelta(hours=30))  # silent: closed
    changed = {
        "from": old,
        "id": "wamid.SYS2",
        "timestamp": str(1772366400 + 48 * 3600 + 60),
        "type": "system",
        "system": {"body": "...", "wa_id": new, "type": "user_changed_number"},
    }
    later = cloud_text("wamid.C2", **{"from": new})
    later["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(  # type: ignore[index]
        1772366400 + 48 * 3600
    )
    for row, event in enumerate(
        _cloud(later, cloud_change("messages", {"messages": [changed]})), 2
    ):
        p.apply(row, event)
    (survivor,) = live(p)
    assert survivor is first
    assert (survivor.status, survivor.opens, survivor.closed_at) == ("open", 2, None)
    assert [e.reason for e in p.state.emitted if e.kind == "opened"][-1] == "reopened"


def test_after_a_close_by_command_a_late_delivered_message_reopens() -> None:
    p = project(*stored(text_body("M1", PN, at=T0)))
    (c,) = live(p)
    assert p.close(c, c.opened_at + timedelta(minutes=5), "command")
    p.apply(9, stored(text_body("M0", PN, at=T0 + 60))[0])  # sent before the close
    assert (c.status, c.opens, c.closed_by) == ("open", 2, None)

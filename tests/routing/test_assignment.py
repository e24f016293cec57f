"""Assignment inside the projection, on real normalized Evolution payloads: when a
conversation is assigned, the waiting queue, groups' rules, SKMs recognised as actors."""

from __future__ import annotations

from datetime import timedelta

from tests.routing.events import ACCOUNT, SHOPPER, T0, stored, text_body
from wacanon.routing.directory import Directory, Skm
from wacanon.routing.facts import StoredEvent
from wacanon.routing.project import Projection
from wacanon.routing.state import Conversation, Lifecycle, RoutingState

ANA_PHONE = "5511911110001"
BIA_PHONE = "5511911110002"
GROUP = "120363025246125888@g.us"
CUSTOMERS = [f"55119876500{i:02d}@s.whatsapp.net" for i in range(10)]


def directory(capacity: int = 10, *, groups: bool = True, **extra: object) -> Directory:
    skms = {
        "skm-ana": Skm("skm-ana", SHOPPER, "Ana", (ANA_PHONE,), capacity, True),
        "skm-bia": Skm("skm-bia", SHOPPER, "Bia", (BIA_PHONE,), capacity, True),
    }
    return Directory(
        skms=skms,
        policies={SHOPPER: str(extra.get("policy", "default"))},
        group_routing=frozenset({SHOPPER}) if groups else frozenset(),
        account_skms=extra.get("account_skms", {}),  # type: ignore[arg-type]
    )


def run(d: Directory, *events: StoredEvent) -> Projection:
    projection = Projection(RoutingState(directory=d), lambda _: timedelta(hours=24))
    for row_id, event in enumerate(events, start=1):
        projection.apply(row_id, event)
    return projection


def assigned(p: Projection) -> list[Lifecycle]:
    return [e for e in p.state.emitted if e.kind == "assigned"]


def by_chat(p: Projection) -> dict[str, Conversation]:
    return {c.chat_id: c for c in p.state.by_id.values()}


def test_new_private_conversations_are_spread_and_the_rest_wait_oldest_first() -> None:
    p = run(
        directory(capacity=1),
        *stored(*(text_body(f"M{i}", CUSTOMERS[i], at=T0 + i) for i in range(4))),
    )
    chats = by_chat(p)
    skms = [chats[CUSTOMERS[i].split("@")[0]].skm_id for i in range(4)]
    assert sorted(s for s in skms[:2] if s) == ["skm-ana", "skm-bia"]
    assert skms[2:] == [None, None]
    queue = [c.chat_id for c in p.state.waiting[SHOPPER]]
    assert queue == [CUSTOMERS[2].split("@")[0], CUSTOMERS[3].split("@")[0]]
    first = assigned(p)[0].assignment
    assert first is not None
    assert first.policy == "default"
    assert first.step == "least_loaded"
    assert [(c.skm_id, c.open, c.capacity) for c in first.candidates] == [
        ("skm-ana", 0, 1),
        ("skm-bia", 0, 1),
    ]

    # Ana's conversation closes: the oldest waiting one is hers at that moment.
    ana_chat = next(c for c in chats.values() if c.skm_id == "skm-ana")
    assert p.close(ana_chat, ana_chat.opened_at + timedelta(minutes=5), "command")
    third = chats[CUSTOMERS[2].split("@")[0]]
    assert third.skm_id == "skm-ana"
    assert third.waiting_since is None
    last = assigned(p)[-1].assignment
    assert last is not None
    assert last.reason.startswith("waited in the queue since")
    assert chats[CUSTOMERS[3].split("@")[0]].skm_id is None


def test_a_reopened_conversation_goes_back_to_its_skm_although_another_is_less_loaded() -> None:
    d = directory()
    d.skms["skm-ana"].unloaded_open = 5  # Ana is busier than Bia
    d.skms["skm-bia"].unloaded_open = 9
    first = run(d, *stored(text_body("M1", CUSTOMERS[0], at=T0)))
    (c,) = first.state.by_id.values()
    assert c.skm_id == "skm-ana"
    d.skms["skm-bia"].unloaded_open = 0
    later = stored(text_body("M2", CUSTOMERS[0], at=T0 + 3 * 86400))
    first.apply(2, later[0])
    assert c.opens == 2
    assert c.status == "open"
    assert c.skm_id == "skm-ana"
    assert len(assigned(first)) == 1  # kept: nothing new to tell


def test_a_group_is_claimed_by_the_first_skm_who_writes_not_by_reactions_or_the_account() -> None:
    ana = f"{ANA_PHONE}@s.whatsapp.net"
    reaction = text_body("G0", GROUP, participant=ana, at=T0)
    reaction["data"]["message"] = {"reactionMessage": {"key": {"id": "X"}, "text": "👍"}}
    reaction["data"]["messageType"] = "reactionMessage"
    own = text_body("G1", GROUP, from_me=True, at=T0 + 1)
    customer = text_body("G2", GROUP, participant=CUSTOMERS[0], at=T0 + 2)
    claim = text_body("G3", GROUP, participant=ana, at=T0 + 3, text="Olá! Sou a Ana 😊")
    p = run(directory(), *stored(reaction, own, customer))
    (group,) = p.state.by_id.values()
    assert group.skm_id is None
    p.apply(9, stored(claim)[0])
    assert group.skm_id == "skm-ana"
    (event,) = assigned(p)
    assert event.assignment is not None
    assert (event.assignment.policy, event.assignment.step) == ("group", "entry_point")
    assert p.state.actor_skms[9] == "skm-ana"
    assert group.first_response_at is not None  # her message answered the customer


def test_a_customer_mention_routes_the_group_and_a_forward_does_not() -> None:
    def mention(message_id: str, at: int, forwarded: bool = False) -> dict[str, object]:
        body = text_body(message_id, GROUP, participant=CUSTOMERS[1], at=at)
        context: dict[str, object] = {"mentionedJid": [f"{BIA_PHONE}@s.whatsapp.net"]}
        if forwarded:
            context.update(isForwarded=True, forwardingScore=1)
        body["data"]["message"] = {
            "extendedTextMessage": {"text": f"@{BIA_PHONE} pode me ajudar?", "contextInfo": context}
        }
        body["data"]["messageType"] = "extendedTextMessage"
        return body

    ana = f"{ANA_PHONE}@s.whatsapp.net"
    p = run(
        directory(),
        *stored(
            text_body("G1", GROUP, participant=ana, at=T0), mention("G2", T0 + 5, forwarded=True)
        ),
    )
    (group,) = p.state.by_id.values()
    assert group.skm_id == "skm-ana"  # the forwarded mention changed nothing
    p.apply(3, stored(mention("G3", T0 + 9))[0])
    assert group.skm_id == "skm-bia"
    step = assigned(p)[-1].assignment
    assert step is not None
    assert (step.step, step.previous_skm_id) == ("mention", "skm-ana")


def test_with_group_routing_off_nobody_is_assigned_a_group() -> None:
    ana = f"{ANA_PHONE}@s.whatsapp.net"
    p = run(directory(groups=False), *stored(text_body("G1", GROUP, participant=ana, at=T0)))
    (group,) = p.state.by_id.values()
    assert group.skm_id is None
    assert not assigned(p)
    assert p.state.actor_skms[1] == "skm-ana"  # still recognised as an SKM


def test_an_account_bound_to_an_skm_gives_them_its_private_chats() -> None:
    d = directory(account_skms={("evolution", ACCOUNT): "skm-bia"})
    d.skms["skm-bia"].unloaded_open = 8
    p = run(d, *stored(text_body("M1", CUSTOMERS[0], at=T0)))
    (c,) = p.state.by_id.values()
    assert c.skm_id == "skm-bia"
    step = assigned(p)[0].assignment
    assert step is not None
    assert step.step == "account"


def test_round_robin_takes_turns_in_id_order() -> None:
    events = stored(*(text_body(f"M{i}", CUSTOMERS[i], at=T0 + i) for i in range(5)))
    p = run(directory(policy="round_robin"), *events)
    chats = by_chat(p)
    turns = [chats[CUSTOMERS[i].split("@")[0]].skm_id for i in range(5)]
    assert turns == ["skm-ana", "skm-bia", "skm-ana", "skm-bia", "skm-ana"]


def test_an_idle_close_gives_its_room_no_earlier_than_the_heir_began_to_wait() -> None:
    # Ana (capacity 1) has customer 0; customer 1 waits from T0+25h. Customer 0's
    # conversation went idle at T0+24h but is closed only by their message at T0+30h: the
    # close is dated T0+24h, yet the heir is assigned when it began to wait, not before.
    d = directory(capacity=1)
    d.skms.pop("skm-bia")
    p = run(
        d,
        *stored(
            text_body("M0", CUSTOMERS[0], at=T0),
            text_body("M1", CUSTOMERS[1], at=T0 + 25 * 3600),
            text_body("M2", CUSTOMERS[0], at=T0 + 30 * 3600),
        ),
    )
    heir = by_chat(p)[CUSTOMERS[1].split("@")[0]]
    assert heir.skm_id == "skm-ana"
    assert heir.waiting_since is None
    (drained,) = [e for e in assigned(p) if e.conversation is heir]
    assert drained.at == heir.opened_at  # T0+25h, not the close's T0+24h


def test_a_waiting_conversation_that_closes_leaves_the_queue() -> None:
    d = directory(capacity=0)
    p = run(d, *stored(text_body("M0", CUSTOMERS[0], at=T0)))
    (c,) = p.state.by_id.values()
    assert c.waiting_since is not None
    p.close_idle([c], c.opened_at + timedelta(hours=25))
    assert (c.status, c.waiting_since) == ("closed", None)

"""Apply stored events, in order, to the routing state: the projection of the event log.

Pure: the same events in the same order on the same state give the same conversations,
participants, message states and lifecycle events, which is what makes ``wacanon
conversations rebuild`` equal to live processing.

Per event:

1. **Identities.** The customer's ids that the event carries together (``chat.phone``
   beside ``chat.lid`` / ``chat.user_id``, the customer actor's, a contact update's) are
   linked in the shopper's graph. When the link joins two customers who both have a
   conversation, the older conversation absorbs the other (``whatsapp.conversation.merged``).
2. **Conversation.** Private chats resolve through the graph to the customer's one
   conversation, created under the key of the id the chat was named by; groups by their
   id. A status, reaction, edit or delete whose chat is not in its payload joins the
   conversation of the message it acts upon — at once, or when that message arrives.
3. **Message index and lifecycle.** Messages are indexed; statuses move a message's state
   forward only. A message after ``close_after`` of silence closes the conversation at
   the moment it went idle and opens it again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from wacanon.canonical.schema import BUSINESS_EVENT_TYPES
from wacanon.routing.assignment import Assigner
from wacanon.routing.facts import StoredEvent
from wacanon.routing.lifecycle import COMMAND_ASSIGN
from wacanon.routing.state import (
    Assignment,
    Conversation,
    IndexedMessage,
    Lifecycle,
    MessageKey,
    Participant,
    RoutingState,
)
from wacanon.routing.threads import (
    conversation_id,
    group_thread_key,
    identities_of,
    identity_of_wa_id,
    private_thread_key,
)

#: Events that belong to no conversation: the account's own connection.
UNROUTED_TYPES = frozenset({"whatsapp.connection.updated"})
#: Events that join a customer's conversation but never open one: an address-book sync
#: or a profile change is not the customer writing (they still link identities).
JOIN_ONLY_TYPES = frozenset({"whatsapp.contact.updated"})
MESSAGE_TYPES = frozenset({"whatsapp.message.inbound", "whatsapp.message.outbound"})
UNKNOWN_CHAT = "unknown"

#: The close-after-inactivity window of a shopper.
WindowOf = Callable[[str], timedelta]


def customer_identities(event: StoredEvent) -> list[str]:
    """The ids of a private chat's customer that this event carries together."""
    chat, actor = event.chat, event.actor
    found = identities_of(chat.phone, chat.lid, chat.user_id)
    named = identity_of_wa_id(chat.id)
    if named is not None and named not in found:
        found.insert(0, named)
    if actor.role == "customer":
        _add(found, actor.wa_id, actor.lid, actor.user_id)
    if event.contact is not None and event.event_type == "whatsapp.contact.updated":
        c = event.contact  # a changed number or BSUID: the old id stays this customer's
        _add(found, c.wa_id, c.lid, c.user_id)
        _add(found, c.previous_wa_id, None, c.previous_user_id)
    return found


def _add(found: list[str], wa_id: str | None, lid: str | None, user_id: str | None) -> None:
    for identity in (
        identity_of_wa_id(wa_id) if wa_id else None,
        f"lid:{lid}" if lid else None,
        f"bsuid:{user_id}" if user_id else None,
    ):
        if identity is not None and identity not in found:
            found.append(identity)


def actor_identities(event: StoredEvent) -> list[str]:
    """A group member's ids, as the event's actor carries them."""
    found: list[str] = []
    a = event.actor
    _add(found, a.wa_id, a.lid, a.user_id)
    return found


class Projection:
    """Applies events to one :class:`RoutingState` (one batch)."""

    def __init__(self, state: RoutingState, window_of: WindowOf) -> None:
        self.state = state
        self.window_of = window_of
        self.assigner = Assigner(state)

    # ------------------------------------------------------------ the graph

    def link(self, shopper: str, ids: list[str], at: datetime) -> str | None:
        """The customer these ids name, linking them; merges customers they join."""
        if not ids:
            return None
        s = self.state
        known: list[str] = []
        for identity in ids:
            customer = s.identities.get((shopper, identity))
            if customer is not None and customer not in known:
                known.append(customer)
        if not known:
            survivor = ids[0]
        elif len(known) == 1:
            survivor = known[0]
        else:
            survivor = self._merge_customers(shopper, known, at)
        for identity in ids:
            if (shopper, identity) not in s.identities:
                s.identities[(shopper, identity)] = survivor
                s.new_identities[(shopper, identity)] = at
        return survivor

    def _merge_customers(self, shopper: str, customers: list[str], at: datetime) -> str:
        """One customer out of several: the one whose conversation is oldest survives."""
        s = self.state

        def age(customer: str) -> tuple[int, datetime, str]:
            conversation = s.by_customer.get((shopper, customer))
            if conversation is None:
                return (1, at, customer)
            return (0, conversation.opened_at, conversation.thread_key)

        ordered = sorted(customers, key=age)
        survivor = ordered[0]
        for absorbed in ordered[1:]:
            s.customer_moves.append((shopper, absorbed, survivor))
            for (conversation, person), p in list(s.participants.items()):
                if person == absorbed and s.by_id[conversation].shopper_id == shopper:
                    self._move_participant(p, conversation, survivor)
            for key, customer in list(s.identities.items()):
                if key[0] == shopper and customer == absorbed:
                    s.identities[key] = survivor
            moved = s.by_customer.pop((shopper, absorbed), None)
            if moved is None:
                continue
            keep = s.by_customer.get((shopper, survivor))
            if keep is None:
                moved.customer_id, moved.changed = survivor, True
                s.by_customer[(shopper, survivor)] = moved
            else:
                self._merge_conversations(keep, moved, at)
        return survivor

    def _merge_conversations(
        self, keep: Conversation, absorbed: Conversation, at: datetime
    ) -> None:
        s = self.state
        absorbed_open = absorbed.status == "open"
        absorbed.status, absorbed.merged_into, absorbed.changed = "merged", keep.id, True
        absorbed.waiting_since = None
        keep.opened_at = min(keep.opened_at, absorbed.opened_at)
        keep.last_event_at = max(keep.last_event_at, absorbed.last_event_at)
        keep.last_message_at = _latest(keep.last_message_at, absorbed.last_message_at)
        keep.last_inbound_at = _latest(keep.last_inbound_at, absorbed.last_inbound_at)
        keep.last_outbound_at = _latest(keep.last_outbound_at, absorbed.last_outbound_at)
        keep.first_inbound_at = _earliest(keep.first_inbound_at, absorbed.first_inbound_at)
        keep.first_response_at = _earliest(keep.first_response_at, absorbed.first_response_at)
        if keep.skm_id is None:
            keep.skm_id = absorbed.skm_id
        keep.changed = True
        freed = absorbed_open and absorbed.skm_id is not None and absorbed.skm_id != keep.skm_id
        if keep.status == "closed" and absorbed_open:
            # The customer is talking in the absorbed one: the survivor opens again.
            keep.status, keep.closed_at, keep.opens = "open", None, keep.opens + 1
            keep.closed_by = None
            s.emitted.append(Lifecycle("opened", keep, at, "reopened", keep.opens))
        for message in s.messages.values():
            if message.conversation_id == absorbed.id:
                message.conversation_id, message.changed = keep.id, True
        for (conversation, person), p in list(s.participants.items()):
            if conversation == absorbed.id:
                self._move_participant(p, keep.id, person)
        s.merges.append((keep.id, absorbed.id))
        s.emitted.append(Lifecycle("merged", keep, at, "identity_linked", keep.opens, absorbed))
        if freed:
            self.assigner.drain(keep.shopper_id, at)

    def _move_participant(self, p: Participant, conversation: str, person: str) -> None:
        """Re-key a participant (its conversation or person was merged); where the new key
        exists, the two are combined."""
        s = self.state
        del s.participants[(p.conversation_id, p.person_id)]
        target = s.participants.get((conversation, person))
        if target is None:
            p.conversation_id, p.person_id, p.changed = conversation, person, True
            s.participants[(conversation, person)] = p
            return
        target.first_seen_at = min(target.first_seen_at, p.first_seen_at)
        target.last_seen_at = max(target.last_seen_at, p.last_seen_at)
        target.wa_id = target.wa_id or p.wa_id
        target.lid = target.lid or p.lid
        target.user_id = target.user_id or p.user_id
        target.display_name = target.display_name or p.display_name
        target.changed = True

    # ------------------------------------------------------------ conversations

    def _open(
        self,
        event: StoredEvent,
        shopper: str,
        thread_key: str,
        chat_type: str,
        chat_id: str,
        customer: str | None,
    ) -> Conversation:
        existing = self.state.by_key.get(thread_key)
        if existing is not None:  # the key exists under another customer: reuse it
            conversation = self.state.current(existing)
            if customer is not None and conversation.customer_id != customer:
                self.state.by_customer[(shopper, customer)] = conversation
            return conversation
        at = event.occurred_at
        conversation = Conversation(
            id=conversation_id(thread_key),
            thread_key=thread_key,
            shopper_id=shopper,
            chat_type=chat_type,
            chat_id=chat_id,
            customer_id=customer,
            provider=event.source.provider,
            account_id=event.source.account_id,
            opened_at=at,
            last_event_at=at,
            new=True,
            changed=True,
        )
        self.state.add_conversation(conversation)
        self.state.emitted.append(Lifecycle("opened", conversation, at, "first_event", 1))
        return conversation

    def _conversation(self, event: StoredEvent, shopper: str) -> Conversation | None:
        chat = event.chat
        if chat.type == "group":
            key = group_thread_key(chat.id, shopper)
            return self._open(event, shopper, key, "group", chat.id, None)
        if chat.id == UNKNOWN_CHAT:
            return None
        customer = self.link(shopper, customer_identities(event), event.occurred_at)
        if customer is None:
            return None
        found = self.state.by_customer.get((shopper, customer))
        if found is not None:
            return self.state.current(found)
        if event.event_type in JOIN_ONLY_TYPES:
            return None
        named = identity_of_wa_id(chat.id) or customer
        key = private_thread_key(named, shopper)
        return self._open(event, shopper, key, "private", chat.id, customer)

    # ------------------------------------------------------------ one event

    def apply(self, row_id: int, event: StoredEvent) -> Conversation | None:
        """Route one stored event; the conversation it joined, or None (it may join one
        later, when the message it acts upon arrives)."""
        shopper = event.routing.shopper_id
        if shopper is None or event.event_type in UNROUTED_TYPES:
            return None
        s = self.state
        if event.conversation is not None:  # a close by command, replayed by a rebuild
            return self._replay_close(row_id, event)
        if event.assignment is not None:  # a manual assignment, replayed by a rebuild
            return self._replay_assign(row_id, event)
        if event.event_type in BUSINESS_EVENT_TYPES:
            return self._business(row_id, event)
        actor_skm = self.assigner.actor_skm(event, shopper)
        if actor_skm is not None and event.actor.role != "business":
            s.actor_skms[row_id] = actor_skm  # actor.role becomes "skm"
        conversation = self._conversation(event, shopper)
        target = event.target_message_id
        key: MessageKey | None = (
            (event.source.provider, event.source.account_id, target) if target else None
        )
        if conversation is None:
            if event.event_type in JOIN_ONLY_TYPES:
                return None
            indexed = s.messages.get(key) if key is not None else None
            if indexed is not None and indexed.conversation_id is not None:
                conversation = s.current(s.by_id[indexed.conversation_id])
            elif key is not None:
                s.new_waiters.append((key, row_id))
                s.waiters.setdefault(key, []).append(row_id)
                s.waiting_events[row_id] = event
                return None
            else:
                return None
        opens = conversation.opens
        if event.event_type in MESSAGE_TYPES:
            self._message_activity(conversation, event, actor_skm is not None)
        conversation.last_event_at = max(conversation.last_event_at, event.occurred_at)
        conversation.changed = True
        if key is not None:
            self._index(key, event, conversation)
        self._participants(conversation, event)
        s.routes[row_id] = conversation
        reopened = conversation.opens > opens
        self.assigner.after_event(s.current(conversation), event, actor_skm, reopened)
        return conversation

    def _replay_close(self, row_id: int, event: StoredEvent) -> Conversation | None:
        assert event.conversation is not None
        found = self.state.by_id.get(event.conversation.id)
        if found is None:
            return None
        c = self.state.current(found)
        if c.status == "open" and event.occurred_at >= c.active_since:
            c.status, c.closed_at, c.changed = "closed", event.occurred_at, True
            c.closed_by = "command" if event.conversation.reason == "command" else "inactivity"
            c.waiting_since = None
            if c.skm_id is not None:
                self.assigner.drain(c.shopper_id, event.occurred_at)
        self.state.routes[row_id] = c
        return c

    def _replay_assign(self, row_id: int, event: StoredEvent) -> Conversation | None:
        a, cid = event.assignment, event.routing.conversation_id
        found = self.state.by_id.get(cid) if cid is not None else None
        if a is None or found is None or event.source.provider_event != COMMAND_ASSIGN:
            return None  # a derived one is never queued; an unknown conversation: nothing
        c = self.state.current(found)
        self.assigner.replay_manual(c, a.skm_id, event.occurred_at)
        self.state.routes[row_id] = c
        return c

    def _business(self, row_id: int, event: StoredEvent) -> Conversation | None:
        """A recorded business event joins the conversation it names (where that one was
        merged since, the survivor) and carries its SKM of the moment; it is no activity
        of the chat (no message, no participant)."""
        cid = event.routing.conversation_id
        found = self.state.by_id.get(cid) if cid is not None else None
        if found is None:
            return None
        c = self.state.current(found)
        self.state.routes[row_id] = c
        return c

    def assign(self, c: Conversation, skm_id: str, at: datetime) -> Assignment | None:
        """Assign by command (see :meth:`Assigner.manual`)."""
        return self.assigner.manual(c, skm_id, at)

    def directory_changed(self, shopper: str, losing: list[Conversation], at: datetime) -> None:
        """The shopper's directory changed: the open conversations of SKMs who were
        deactivated go by the policy, oldest first, and whoever gained room takes the
        queue's head."""
        for c in sorted(losing, key=lambda x: (x.opened_at, x.id)):
            self.assigner.lose(self.state.current(c), at)
        self.assigner.drain(shopper, at)

    def _message_activity(self, c: Conversation, event: StoredEvent, by_skm: bool) -> None:
        at = event.occurred_at
        window = self.window_of(c.shopper_id)
        if c.status == "open" and at - c.active_since > window:
            self._close(c, c.active_since + window, "inactivity")
        if c.status == "closed" and (
            c.closed_by == "command" or (c.closed_at is not None and at >= c.closed_at)
        ):
            c.status, c.closed_at, c.closed_by, c.opens = "open", None, None, c.opens + 1
            self.state.emitted.append(Lifecycle("opened", c, at, "reopened", c.opens))
        # In a group, an SKM's message is the business answering.
        inbound = event.message is not None and event.message.direction == "inbound"
        inbound = inbound and not (by_skm and c.chat_type == "group")
        c.last_message_at = _latest(c.last_message_at, at)
        if inbound:
            c.last_inbound_at = _latest(c.last_inbound_at, at)
            c.first_inbound_at = _earliest(c.first_inbound_at, at)
        else:
            c.last_outbound_at = _latest(c.last_outbound_at, at)
            first_in = c.first_inbound_at
            if c.first_response_at is None and first_in is not None and at >= first_in:
                c.first_response_at = at

    def _close(self, c: Conversation, at: datetime, reason: str, *, given: bool = False) -> None:
        c.status, c.closed_at, c.changed = "closed", at, True
        c.waiting_since = None  # it leaves the queue; reopened, it is assigned afresh
        c.closed_by = "command" if reason == "command" else "inactivity"
        self.state.emitted.append(Lifecycle("closed", c, at, reason, c.opens, input=given))
        if c.skm_id is not None:  # their capacity frees: the queue's head is assigned
            self.assigner.drain(c.shopper_id, at)

    def close_idle(self, conversations: list[Conversation], now: datetime) -> None:
        """Close the open conversations silent for their shopper's window, at the moment
        they went idle (not at ``now``). When this runs depends on the clock, so its
        closes are inputs a rebuild replays (a message older than the close, routed
        after it, then does not reopen the conversation — live or rebuilt; after a close
        by command, any message reopens it)."""
        for c in conversations:
            if c.status != "open":
                continue
            idle_at = c.active_since + self.window_of(c.shopper_id)
            if idle_at <= now:
                self._close(c, idle_at, "inactivity", given=True)

    def close(self, c: Conversation, at: datetime, reason: str) -> bool:
        """Close by command; False when it was not open."""
        if c.status != "open":
            return False
        self._close(c, at, reason, given=True)
        return True

    def _index(self, key: MessageKey, event: StoredEvent, c: Conversation) -> None:
        s = self.state
        indexed = s.messages.get(key)
        if indexed is None:
            if event.status is None and event.event_type not in MESSAGE_TYPES:
                return  # a reaction / edit / delete of a message we never saw: no entry
            indexed = IndexedMessage(*key, changed=True)
            s.messages[key] = indexed
        if indexed.conversation_id is None:
            indexed.conversation_id, indexed.changed = c.id, True
        m = event.message
        is_message = event.event_type in MESSAGE_TYPES and m is not None and m.id == key[2]
        if is_message and m is not None and indexed.direction is None:
            indexed.direction, indexed.type = m.direction, m.type
            indexed.occurred_at, indexed.changed = event.occurred_at, True
        if event.status is not None:
            indexed.advance(event.status.value, event.occurred_at)
        for row_id in s.waiters.pop(key, []):
            s.resolved_waiters.append(row_id)
            waiting = s.waiting_events.pop(row_id, None)
            if waiting is None:
                s.routes[row_id] = c
            else:  # its message is indexed now: the waiting event applies in full
                self.apply(row_id, waiting)

    def _participants(self, c: Conversation, event: StoredEvent) -> None:
        at = event.occurred_at
        actor, chat = event.actor, event.chat
        if c.chat_type == "private":
            if c.customer_id is None:
                return
            name = actor.display_name if actor.role == "customer" else None
            named = chat.id if chat.id != UNKNOWN_CHAT else None
            p = self._seen(c, c.customer_id, "customer", at, name)
            _learn(p, chat.phone, chat.lid, chat.user_id, named)
            return
        if actor.role == "customer" and actor.wa_id:
            person = self.link(c.shopper_id, actor_identities(event), at)
            if person is not None:
                p = self._seen(c, person, "member", at, actor.display_name)
                _learn(p, None, actor.lid, actor.user_id, actor.wa_id)
                p.left_at = None
        group = event.group
        if group is None:
            return
        left = event.event_type == "whatsapp.group.left"
        joined = event.event_type == "whatsapp.group.joined"
        for wa_id in group.participants:
            identity = identity_of_wa_id(wa_id)
            person = self.link(c.shopper_id, [identity], at) if identity else None
            if person is None:
                continue
            p = self._seen(c, person, "member", at, None)
            _learn(p, None, None, None, wa_id)
            if left:
                p.left_at = at
            elif joined:
                p.left_at = None

    def _seen(
        self, c: Conversation, person: str, role: str, at: datetime, display_name: str | None
    ) -> Participant:
        key = (c.id, person)
        p = self.state.participants.get(key)
        if p is None:
            p = Participant(c.id, person, role, at, at)
            self.state.participants[key] = p
        p.first_seen_at, p.last_seen_at = min(p.first_seen_at, at), max(p.last_seen_at, at)
        if display_name:
            p.display_name = display_name
        p.changed = True
        return p


def _learn(
    p: Participant, phone: str | None, lid: str | None, user_id: str | None, wa_id: str | None
) -> None:
    """Fill a participant's ids from what one event shows (``wa_id`` in the spec's forms)."""
    if wa_id:
        if wa_id.startswith("lid:"):
            lid = lid or wa_id[4:]
        elif wa_id.startswith("bsuid:"):
            user_id = user_id or wa_id[6:]
        else:
            phone = phone or wa_id
    p.wa_id = phone or p.wa_id
    p.lid = lid or p.lid
    p.user_id = user_id or p.user_id


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a <= b else b

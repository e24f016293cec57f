"""The part of the routing state one batch of events needs, in memory.

The store loads it (identities, conversations, indexed messages and waiting events that
the batch's events name), :mod:`wacanon.routing.project` changes it, and the store
writes back what is marked changed. Only one projection runs at a time (the store
serializes batches, see ``docs/routing.md``), so what was loaded is what is current.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from wacanon.routing.directory import Directory
from wacanon.routing.facts import StoredEvent
from wacanon.routing.policies import Load

#: Message statuses in the order they may only move forward; ``failed`` is final.
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 99}


@dataclass(slots=True)
class Conversation:
    id: str
    thread_key: str
    shopper_id: str
    chat_type: str
    chat_id: str
    customer_id: str | None
    provider: str
    account_id: str
    opened_at: datetime
    last_event_at: datetime
    status: str = "open"  # open | closed | merged
    closed_at: datetime | None = None
    #: Why it is closed: ``inactivity`` or ``command`` (a message older than an idle
    #: close belongs to the window that closed; any message after a command reopens).
    closed_by: str | None = None
    last_message_at: datetime | None = None
    first_inbound_at: datetime | None = None
    last_inbound_at: datetime | None = None
    last_outbound_at: datetime | None = None
    first_response_at: datetime | None = None
    skm_id: str | None = None
    merged_into: str | None = None
    #: How many times it was opened: the n-th opening and its closing key their events.
    opens: int = 1
    #: How many times it was assigned: the n-th assignment keys its ``thread.assigned``.
    assignments: int = 0
    #: The last SKM it had (kept when it loses them): "who served this customer last".
    last_skm_id: str | None = None
    #: Since when it waits in its shopper's queue for an SKM with room.
    waiting_since: datetime | None = None
    #: When its current SKM got it.
    assigned_at: datetime | None = None
    new: bool = False
    changed: bool = False

    @property
    def active_since(self) -> datetime:
        """What inactivity is measured from: the last message either way, else the opening."""
        return self.last_message_at or self.opened_at


@dataclass(slots=True)
class IndexedMessage:
    """One message of the index; a status may create it before the message arrives."""

    provider: str
    account_id: str
    message_id: str
    conversation_id: str | None = None
    direction: str | None = None
    type: str | None = None
    occurred_at: datetime | None = None
    status: str | None = None
    status_at: datetime | None = None
    changed: bool = False

    def advance(self, value: str, at: datetime) -> bool:
        """Move the status forward only (``failed`` is final); whether it moved."""
        current = STATUS_RANK.get(self.status or "", -1)
        if current == STATUS_RANK["failed"] or STATUS_RANK[value] <= current:
            return False
        self.status, self.status_at, self.changed = value, at, True
        return True


@dataclass(slots=True)
class Participant:
    """One person in one conversation (the store loads those of the batch's conversations)."""

    conversation_id: str
    person_id: str
    role: str
    first_seen_at: datetime
    last_seen_at: datetime
    wa_id: str | None = None
    lid: str | None = None
    user_id: str | None = None
    display_name: str | None = None
    #: Set by ``group.left``; a later ``group.joined`` or message of theirs clears it.
    left_at: datetime | None = None
    changed: bool = False


@dataclass(frozen=True, slots=True)
class Assignment:
    """One assignment decision as ``whatsapp.thread.assigned`` tells it."""

    skm_id: str | None
    previous_skm_id: str | None
    policy: str
    step: str
    reason: str
    candidates: tuple[Load, ...] = ()


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A conversation event the projection emits: opened, closed, merged or assigned."""

    kind: str  # opened | closed | merged | assigned
    conversation: Conversation
    at: datetime
    reason: str
    #: The n-th opening this event opens or closes (keys the event).
    opening: int
    absorbed: Conversation | None = None
    #: A close decided outside the event log — by command, or by the clock (the idle
    #: job) — is an input: a rebuild replays it where it happened instead of deriving it.
    input: bool = False
    assignment: Assignment | None = None


MessageKey = tuple[str, str, str]


@dataclass(slots=True)
class RoutingState:
    #: (shopper, identity) → customer id, for every identity the batch names.
    identities: dict[tuple[str, str], str] = field(default_factory=dict)
    new_identities: dict[tuple[str, str], datetime] = field(default_factory=dict)
    #: (shopper, absorbed customer, surviving customer), in order.
    customer_moves: list[tuple[str, str, str]] = field(default_factory=list)
    by_customer: dict[tuple[str, str], Conversation] = field(default_factory=dict)
    by_key: dict[str, Conversation] = field(default_factory=dict)
    by_id: dict[str, Conversation] = field(default_factory=dict)
    messages: dict[MessageKey, IndexedMessage] = field(default_factory=dict)
    #: Events (row ids) that wait for a message to learn their conversation.
    waiters: dict[MessageKey, list[int]] = field(default_factory=dict)
    new_waiters: list[tuple[MessageKey, int]] = field(default_factory=list)
    #: Waiting events (row ids) whose message arrived in this batch.
    resolved_waiters: list[int] = field(default_factory=list)
    #: The waiting events themselves, applied in full when their message arrives.
    waiting_events: dict[int, StoredEvent] = field(default_factory=dict)
    participants: dict[tuple[str, str], Participant] = field(default_factory=dict)
    #: (surviving id, absorbed id), in order.
    merges: list[tuple[str, str]] = field(default_factory=list)
    #: Row id → the conversation it joins (merges are followed when written).
    routes: dict[int, Conversation] = field(default_factory=dict)
    emitted: list[Lifecycle] = field(default_factory=list)
    #: The SKMs of the batch's shoppers, their load and rules (None: no assignment).
    directory: Directory | None = None
    #: Per shopper, the conversations waiting for an SKM, oldest first (the queue's head).
    waiting: dict[str, list[Conversation]] = field(default_factory=dict)
    #: Row id → the SKM who acted in that event (``actor.role = "skm"``).
    actor_skms: dict[int, str] = field(default_factory=dict)

    def add_conversation(self, conversation: Conversation) -> None:
        self.by_id[conversation.id] = conversation
        self.by_key[conversation.thread_key] = conversation
        if conversation.customer_id is not None and conversation.status != "merged":
            self.by_customer[(conversation.shopper_id, conversation.customer_id)] = conversation

    def current(self, conversation: Conversation) -> Conversation:
        """Where a merged conversation's events now belong (merges may chain)."""
        seen = 0
        while conversation.merged_into is not None and seen < 64:
            following = self.by_id.get(conversation.merged_into)
            if following is None:
                break
            conversation, seen = following, seen + 1
        return conversation

"""The routing tables: load what a batch of events needs, write back what it changed.

Race-freedom is by construction, not by locks with timeouts: every projection batch
(and every close, by command or inactivity) begins by updating the ``routed_seq`` row of
``routing_state``. On PostgreSQL that row lock makes a second process's batch wait until
the first commits, and its statements then read what the first wrote (READ COMMITTED); on
SQLite the update takes the database's write lock. So one batch at a time reads and
changes the graph, whichever process runs it, and the unique keys (``thread_key``,
(shopper, identity), the message index's key) hold even so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from wacanon.canonical.times import as_utc
from wacanon.routing.facts import StoredEvent, read_event
from wacanon.routing.lifecycle import DERIVED_PREFIX
from wacanon.routing.project import actor_identities, customer_identities
from wacanon.routing.state import (
    Conversation,
    IndexedMessage,
    MessageKey,
    Participant,
    RoutingState,
)
from wacanon.routing.threads import group_thread_key, identity_of_wa_id, private_thread_key
from wacanon.store.tables import (
    assignment_cursors,
    conversations,
    events,
    identities,
    message_waiters,
    messages,
    participants,
    routing_state,
)

SEQ = "routed_seq"
_IN_CHUNK = 500


def _insert(connection: sa.Connection, table: sa.Table) -> Any:
    return (postgresql if connection.dialect.name == "postgresql" else sqlite).insert(table)


def lock(connection: sa.Connection) -> int:
    """Serialize with every other projection batch (see the module docstring); the last
    sequence number given."""
    bump = (
        routing_state.update()
        .where(routing_state.c.name == SEQ)
        .values(value=routing_state.c.value)
    )
    if connection.execute(bump).rowcount == 0:
        connection.execute(
            _insert(connection, routing_state).values(name=SEQ, value=0).on_conflict_do_nothing()
        )
        connection.execute(bump)
    value = connection.execute(
        sa.select(routing_state.c.value).where(routing_state.c.name == SEQ)
    ).scalar_one()
    return int(value)


def current_seq(connection: sa.Connection) -> int:
    """The last sequence number given, read without the lock (0 before any batch)."""
    value = connection.execute(
        sa.select(routing_state.c.value).where(routing_state.c.name == SEQ)
    ).scalar()
    return int(value or 0)


def set_seq(connection: sa.Connection, value: int) -> None:
    connection.execute(
        routing_state.update().where(routing_state.c.name == SEQ).values(value=value)
    )


def unrouted(connection: sa.Connection, limit: int) -> list[tuple[int, str]]:
    """The oldest events not routed yet: (row id, canonical JSON)."""
    query = (
        sa.select(events.c.id, events.c.payload)
        .where(events.c.routed_seq.is_(None))
        .order_by(events.c.id)
        .limit(limit)
    )
    return [(int(row_id), payload) for row_id, payload in connection.execute(query)]


def has_unrouted(connection: sa.Connection) -> bool:
    """Whether any event waits for routing: one probe of the partial index, no lock — so
    an idle router, or one whose shoppers all have routing off, never writes."""
    query = sa.select(events.c.id).where(events.c.routed_seq.is_(None)).limit(1)
    return connection.execute(query).first() is not None


def has_passed_over(connection: sa.Connection, shopper_id: str) -> bool:
    query = sa.select(events.c.id).where(
        events.c.shopper_id == shopper_id, events.c.routed_seq == 0
    )
    return connection.execute(query.limit(1)).first() is not None


def requeue_passed_over(connection: sa.Connection, shopper_id: str) -> int:
    """Routing was turned on for a shopper: its passed-over events go to the queue."""
    result = connection.execute(
        events.update()
        .where(events.c.shopper_id == shopper_id, events.c.routed_seq == 0)
        .values(routed_seq=None)
    )
    return int(result.rowcount or 0)


def pass_over(connection: sa.Connection, row_ids: Sequence[int]) -> None:
    if row_ids:
        connection.execute(
            events.update().where(events.c.id == sa.bindparam("rid")).values(routed_seq=0),
            [{"rid": r} for r in row_ids],
        )


# ------------------------------------------------------------------ loading


def load(connection: sa.Connection, batch: Sequence[tuple[int, StoredEvent]]) -> RoutingState:
    """Everything the batch's events name: their identities, the conversations those
    lead to (and the keys new ones would take), the messages they act upon, and the
    events waiting for the batch's messages."""
    state = RoutingState()
    wanted: dict[str, set[str]] = {}
    keys: set[str] = set()
    message_keys: set[MessageKey] = set()
    for _, event in batch:
        shopper = event.routing.shopper_id
        if shopper is None:
            continue
        ids = wanted.setdefault(shopper, set())
        chat = event.chat
        if chat.type == "group":
            keys.add(group_thread_key(chat.id, shopper))
            ids.update(actor_identities(event))
            if event.group is not None:
                ids.update(i for i in map(identity_of_wa_id, event.group.participants) if i)
        elif chat.id != "unknown":
            found = customer_identities(event)
            ids.update(found)
            named = identity_of_wa_id(chat.id)
            if named or found:
                keys.add(private_thread_key(named or found[0], shopper))
        target = event.target_message_id
        if target:
            message_keys.add((event.source.provider, event.source.account_id, target))
    replayed = {e.conversation.id for _, e in batch if e.conversation is not None}
    # Manual assignments and business events name their conversation.
    replayed |= {e.routing.conversation_id for _, e in batch if e.routing.conversation_id}
    customers: dict[str, set[str]] = {}
    for shopper, ids in wanted.items():
        for chunk in _chunks(sorted(ids)):
            query = sa.select(identities.c.identity, identities.c.customer_id).where(
                identities.c.shopper_id == shopper, identities.c.identity.in_(chunk)
            )
            for identity, customer in connection.execute(query):
                state.identities[(shopper, identity)] = customer
                customers.setdefault(shopper, set()).add(customer)
    _load_messages(connection, state, message_keys)
    ids_wanted = {m.conversation_id for m in state.messages.values() if m.conversation_id}
    ids_wanted |= replayed
    _load_conversations(connection, state, customers, keys, ids_wanted)
    _load_waiters(connection, state, message_keys)
    return state


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _conversation(row: Any) -> Conversation:
    return Conversation(
        id=row.id,
        thread_key=row.thread_key,
        shopper_id=row.shopper_id,
        chat_type=row.chat_type,
        chat_id=row.chat_id,
        customer_id=row.customer_id,
        provider=row.provider,
        account_id=row.account_id,
        opened_at=as_utc(row.opened_at),
        last_event_at=as_utc(row.last_event_at),
        status=row.status,
        closed_at=_utc_or_none(row.closed_at),
        closed_by=row.closed_by,
        last_message_at=_utc_or_none(row.last_message_at),
        first_inbound_at=_utc_or_none(row.first_inbound_at),
        last_inbound_at=_utc_or_none(row.last_inbound_at),
        last_outbound_at=_utc_or_none(row.last_outbound_at),
        first_response_at=_utc_or_none(row.first_response_at),
        skm_id=row.skm_id,
        merged_into=row.merged_into,
        opens=row.opens,
        assignments=row.assignments,
        last_skm_id=row.last_skm_id,
        waiting_since=_utc_or_none(row.waiting_since),
        assigned_at=_utc_or_none(row.assigned_at),
    )


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _load_conversations(
    connection: sa.Connection,
    state: RoutingState,
    customers: dict[str, set[str]],
    keys: set[str],
    ids: set[str],
) -> None:
    conditions = []
    for shopper, found in customers.items():
        for chunk in _chunks(sorted(found)):
            conditions.append(
                sa.and_(
                    conversations.c.shopper_id == shopper,
                    conversations.c.customer_id.in_(chunk),
                )
            )
    for chunk in _chunks(sorted(keys)):
        conditions.append(conversations.c.thread_key.in_(chunk))
    for chunk in _chunks(sorted(ids)):
        conditions.append(conversations.c.id.in_(chunk))
    if conditions:
        for row in connection.execute(sa.select(conversations).where(sa.or_(*conditions))):
            state.add_conversation(_conversation(row))
    load_conversations_by_id(connection, state, set())
    _load_participants(connection, state)


def _load_participants(connection: sa.Connection, state: RoutingState) -> None:
    """The participants of the loaded conversations: what routing changes of them is
    then decided in order, event by event, whatever the batches were."""
    for chunk in _chunks(sorted(state.by_id)):
        query = sa.select(participants).where(participants.c.conversation_id.in_(chunk))
        for row in connection.execute(query):
            state.participants[(row.conversation_id, row.person_id)] = Participant(
                conversation_id=row.conversation_id,
                person_id=row.person_id,
                role=row.role,
                first_seen_at=as_utc(row.first_seen_at),
                last_seen_at=as_utc(row.last_seen_at),
                wa_id=row.wa_id,
                lid=row.lid,
                user_id=row.user_id,
                display_name=row.display_name,
                left_at=_utc_or_none(row.left_at),
            )


def load_conversations_by_id(connection: sa.Connection, state: RoutingState, ids: set[str]) -> None:
    """These conversations, and those the loaded ones were merged into (merges may chain)."""
    for _ in range(64):
        wanted = ids | {
            c.merged_into
            for c in state.by_id.values()
            if c.merged_into is not None and c.merged_into not in state.by_id
        }
        wanted -= set(state.by_id)
        if not wanted:
            return
        ids = set()
        for chunk in _chunks(sorted(wanted)):
            query = sa.select(conversations).where(conversations.c.id.in_(chunk))
            for row in connection.execute(query):
                state.add_conversation(_conversation(row))


def _by_account(keys: set[MessageKey]) -> dict[tuple[str, str], list[str]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for provider, account, message_id in keys:
        grouped.setdefault((provider, account), []).append(message_id)
    return grouped


def _load_messages(connection: sa.Connection, state: RoutingState, keys: set[MessageKey]) -> None:
    for (provider, account), ids in _by_account(keys).items():
        for chunk in _chunks(sorted(ids)):
            query = sa.select(messages).where(
                messages.c.provider == provider,
                messages.c.account_id == account,
                messages.c.message_id.in_(chunk),
            )
            for row in connection.execute(query):
                state.messages[(provider, account, row.message_id)] = IndexedMessage(
                    provider,
                    account,
                    row.message_id,
                    conversation_id=row.conversation_id,
                    direction=row.direction,
                    type=row.type,
                    occurred_at=_utc_or_none(row.occurred_at),
                    status=row.status,
                    status_at=_utc_or_none(row.status_at),
                )


def _load_waiters(connection: sa.Connection, state: RoutingState, keys: set[MessageKey]) -> None:
    for (provider, account), ids in _by_account(keys).items():
        for chunk in _chunks(sorted(ids)):
            w = message_waiters.c
            query = (
                sa.select(w.message_id, w.event_row_id, events.c.payload)
                .join(events, events.c.id == w.event_row_id)
                .where(w.provider == provider, w.account_id == account, w.message_id.in_(chunk))
            )
            for message_id, row_id, payload in connection.execute(query):
                state.waiters.setdefault((provider, account, message_id), []).append(int(row_id))
                state.waiting_events[int(row_id)] = read_event(payload)


def open_conversations_idle_since(connection: sa.Connection, cutoff: datetime) -> RoutingState:
    """The open conversations silent since before ``cutoff`` (candidates for closing)."""
    state = RoutingState()
    active = sa.func.coalesce(conversations.c.last_message_at, conversations.c.opened_at)
    query = sa.select(conversations).where(conversations.c.status == "open", active < cutoff)
    for row in connection.execute(query):
        state.add_conversation(_conversation(row))
    return state


def conversation_state(connection: sa.Connection, conversation: str) -> RoutingState:
    state = RoutingState()
    load_conversations_by_id(connection, state, {conversation})
    return state


#: ``routed_seq`` of a derived lifecycle event while a rebuild decides whether it stands.
UNCONFIRMED = -1


def reset_shopper(connection: sa.Connection, shopper_id: str) -> int:
    """Forget a shopper's conversations so its events are routed again from the start:
    its graph, conversations, participants and index entries go; its events (closes by
    command or clock included: they are inputs) wait for routing again. How many wait.

    Its derived lifecycle events stay, marked :data:`UNCONFIRMED`: the rebuild derives
    them again under the same idempotency keys, which keeps their rows (ids, receipt
    times — a feed read by id sees nothing twice); :func:`drop_unconfirmed` removes
    those it no longer derives."""
    mine = sa.select(conversations.c.id).where(conversations.c.shopper_id == shopper_id)
    its_events = sa.select(events.c.id).where(events.c.shopper_id == shopper_id)
    connection.execute(participants.delete().where(participants.c.conversation_id.in_(mine)))
    connection.execute(messages.delete().where(messages.c.conversation_id.in_(mine)))
    connection.execute(
        message_waiters.delete().where(message_waiters.c.event_row_id.in_(its_events))
    )
    connection.execute(conversations.delete().where(conversations.c.shopper_id == shopper_id))
    connection.execute(identities.delete().where(identities.c.shopper_id == shopper_id))
    connection.execute(
        assignment_cursors.delete().where(assignment_cursors.c.shopper_id == shopper_id)
    )
    derived = events.c.provider_event.startswith(DERIVED_PREFIX, autoescape=True)
    connection.execute(
        events.update()
        .where(events.c.shopper_id == shopper_id, derived)
        .values(routed_seq=UNCONFIRMED)
    )
    result = connection.execute(
        events.update()
        .where(events.c.shopper_id == shopper_id, ~derived)
        .values(
            routed_seq=None,
            conversation_id=None,
            thread_key=None,
            skm_id=None,
            actor_role=sa.case(
                (events.c.actor_role == "skm", "customer"), else_=events.c.actor_role
            ),
        )
    )
    # A batch read before this reset must not be written after it: the changed sequence
    # number tells it (see ``Router.route_pending``).
    connection.execute(
        routing_state.update()
        .where(routing_state.c.name == SEQ)
        .values(value=routing_state.c.value + 1)
    )
    return int(result.rowcount or 0)


def drop_unconfirmed(connection: sa.Connection, shopper_id: str) -> int:
    """After a rebuild: the derived lifecycle events it did not derive again."""
    result = connection.execute(
        events.delete().where(events.c.shopper_id == shopper_id, events.c.routed_seq == UNCONFIRMED)
    )
    return int(result.rowcount or 0)


def confirm_lifecycle(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Lifecycle events a rebuild derived again that it had marked unconfirmed: the row
    stays (its id, its receipt time), with this derivation's content, sequence number
    and conversation. Rows not marked are left alone — among them the inputs a rebuild
    replays (closes by command or clock), whatever key a new event shares with them."""
    if rows:
        statement = events.update().where(
            events.c.idempotency_key == sa.bindparam("k"), events.c.routed_seq == UNCONFIRMED
        )
        connection.execute(
            statement.values(
                routed_seq=sa.bindparam("seq"),
                conversation_id=sa.bindparam("cid"),
                thread_key=sa.bindparam("key"),
                occurred_at=sa.bindparam("at"),
                payload=sa.bindparam("body"),
            ),
            [
                {
                    "k": r["idempotency_key"],
                    "seq": r["routed_seq"],
                    "cid": r["conversation_id"],
                    "key": r["thread_key"],
                    "at": r["occurred_at"],
                    "body": r["payload"],
                }
                for r in rows
            ],
        )


def has_events_of(connection: sa.Connection, shopper_id: str) -> bool:
    """Whether any event names this shopper (one index probe, not a scan)."""
    query = sa.select(events.c.id).where(events.c.shopper_id == shopper_id).limit(1)
    return connection.execute(query).first() is not None


def routed_shoppers(connection: sa.Connection) -> list[str]:
    """Shoppers with events (the ones a rebuild of everything covers)."""
    query = sa.select(events.c.shopper_id).where(events.c.shopper_id.is_not(None)).distinct()
    return sorted(str(s) for (s,) in connection.execute(query))


# ------------------------------------------------------------------ writing


def _conversation_row(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "thread_key": c.thread_key,
        "shopper_id": c.shopper_id,
        "chat_type": c.chat_type,
        "chat_id": c.chat_id,
        "customer_id": c.customer_id,
        "provider": c.provider,
        "account_id": c.account_id,
        "status": c.status,
        "opened_at": c.opened_at,
        "closed_at": c.closed_at,
        "closed_by": c.closed_by,
        "last_event_at": c.last_event_at,
        "last_message_at": c.last_message_at,
        "first_inbound_at": c.first_inbound_at,
        "last_inbound_at": c.last_inbound_at,
        "last_outbound_at": c.last_outbound_at,
        "first_response_at": c.first_response_at,
        "skm_id": c.skm_id,
        "merged_into": c.merged_into,
        "opens": c.opens,
        "assignments": c.assignments,
        "last_skm_id": c.last_skm_id,
        "waiting_since": c.waiting_since,
        "assigned_at": c.assigned_at,
    }


def save(
    connection: sa.Connection,
    state: RoutingState,
    routed: Sequence[tuple[int, int]],
    lifecycle_rows: Sequence[dict[str, Any]],
) -> None:
    """Write what the projection changed. ``routed`` is (row id, sequence number) of the
    batch's events; lifecycle rows come ready, their ``routed_seq`` set."""
    _save_identities(connection, state)
    new = [_conversation_row(c) for c in state.by_id.values() if c.new]
    if new:
        connection.execute(conversations.insert(), new)
    changed = [_conversation_row(c) for c in state.by_id.values() if c.changed and not c.new]
    if changed:
        values: dict[str, Any] = {
            col: sa.bindparam(f"v_{col}") for col in changed[0] if col != "id"
        }
        statement = conversations.update().where(conversations.c.id == sa.bindparam("v_id"))
        connection.execute(
            statement.values(**values), [{f"v_{k}": v for k, v in row.items()} for row in changed]
        )
    for keep, absorbed in state.merges:
        _move_conversation(connection, state, keep, absorbed)
    _save_messages(connection, state)
    _save_participants(connection, state.participants.values())
    _save_waiters(connection, state)
    _save_routes(connection, state, routed)
    if lifecycle_rows:
        connection.execute(events.insert(), list(lifecycle_rows))


def _save_identities(connection: sa.Connection, state: RoutingState) -> None:
    rows = [
        {
            "shopper_id": shopper,
            "identity": identity,
            "customer_id": state.identities[(shopper, identity)],
            "first_seen_at": at,
        }
        for (shopper, identity), at in state.new_identities.items()
    ]
    if rows:
        connection.execute(_insert(connection, identities).on_conflict_do_nothing(), rows)
    for shopper, absorbed, survivor in state.customer_moves:
        connection.execute(
            identities.update()
            .where(identities.c.shopper_id == shopper, identities.c.customer_id == absorbed)
            .values(customer_id=survivor)
        )
        mine = sa.select(conversations.c.id).where(conversations.c.shopper_id == shopper)
        _move_participants(
            connection,
            sa.and_(participants.c.person_id == absorbed, participants.c.conversation_id.in_(mine)),
            person_id=survivor,
        )


def _move_participants(
    connection: sa.Connection, where: Any, *, person_id: Any = None, conversation_id: Any = None
) -> None:
    """Re-key participants rows (a merged person or conversation); where the new key
    exists already, the existing row stays and the moved one goes."""
    cols = list(participants.columns)
    select_cols = [
        sa.literal(person_id).label("person_id")
        if c.name == "person_id" and person_id is not None
        else sa.literal(conversation_id).label("conversation_id")
        if c.name == "conversation_id" and conversation_id is not None
        else c
        for c in cols
    ]
    moved = _insert(connection, participants).from_select(
        [c.name for c in cols], sa.select(*select_cols).where(where)
    )
    connection.execute(moved.on_conflict_do_nothing())
    connection.execute(participants.delete().where(where))


def _move_conversation(
    connection: sa.Connection, state: RoutingState, keep_id: str, absorbed_id: str
) -> None:
    keep = state.current(state.by_id[keep_id])
    connection.execute(
        events.update()
        .where(events.c.conversation_id == absorbed_id)
        .values(conversation_id=keep.id, thread_key=keep.thread_key)
    )
    connection.execute(
        messages.update()
        .where(messages.c.conversation_id == absorbed_id)
        .values(conversation_id=keep.id)
    )
    _move_participants(
        connection, participants.c.conversation_id == absorbed_id, conversation_id=keep.id
    )


def _save_messages(connection: sa.Connection, state: RoutingState) -> None:
    rows = [
        {
            "provider": m.provider,
            "account_id": m.account_id,
            "message_id": m.message_id,
            "conversation_id": state.current(state.by_id[m.conversation_id]).id
            if m.conversation_id in state.by_id
            else m.conversation_id,
            "direction": m.direction,
            "type": m.type,
            "occurred_at": m.occurred_at,
            "status": m.status,
            "status_at": m.status_at,
        }
        for m in state.messages.values()
        if m.changed
    ]
    if not rows:
        return
    statement = _insert(connection, messages)
    update = {
        c: statement.excluded[c]
        for c in ("conversation_id", "direction", "type", "occurred_at", "status", "status_at")
    }
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["provider", "account_id", "message_id"], set_=update
        ),
        rows,
    )


def _save_participants(connection: sa.Connection, seen: Iterable[Participant]) -> None:
    rows = [
        {
            "conversation_id": p.conversation_id,
            "person_id": p.person_id,
            "role": p.role,
            "wa_id": p.wa_id,
            "lid": p.lid,
            "user_id": p.user_id,
            "display_name": p.display_name,
            "first_seen_at": p.first_seen_at,
            "last_seen_at": p.last_seen_at,
            "left_at": p.left_at,
        }
        for p in seen
        if p.changed
    ]
    if not rows:
        return
    statement = _insert(connection, participants)
    columns = ("role", "wa_id", "lid", "user_id", "display_name", "first_seen_at",
               "last_seen_at", "left_at")  # fmt: skip
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["conversation_id", "person_id"],
            set_={c: statement.excluded[c] for c in columns},
        ),
        rows,
    )


def _save_waiters(connection: sa.Connection, state: RoutingState) -> None:
    waiting = {(key, row) for key, rows in state.waiters.items() for row in rows}
    new = [
        {"provider": k[0], "account_id": k[1], "message_id": k[2], "event_row_id": row}
        for k, row in state.new_waiters
        if (k, row) in waiting
    ]
    if new:
        connection.execute(_insert(connection, message_waiters).on_conflict_do_nothing(), new)
    for chunk in _chunks(sorted(state.resolved_waiters)):
        connection.execute(
            message_waiters.delete().where(message_waiters.c.event_row_id.in_(chunk))
        )


def _save_routes(
    connection: sa.Connection, state: RoutingState, routed: Sequence[tuple[int, int]]
) -> None:
    in_batch = dict(routed)
    rows = []
    plain = []
    for row_id, seq in routed:
        target = state.routes.get(row_id)
        c = state.current(target) if target is not None else None
        row = {
            "rid": row_id,
            "seq": seq,
            "cid": c.id if c else None,
            "key": c.thread_key if c else None,
        }
        actor_skm = state.actor_skms.get(row_id)
        skm = actor_skm or (c.skm_id if c else None)
        if skm is None:
            plain.append(row)
        else:  # the SKM who acted, else the conversation's (``routing.skm_id``)
            rows.append({**row, "skm": skm, "role": "skm" if actor_skm else None})
    # (an actor recognised as an SKM was a customer to the normalizer: reset_shopper
    # gives that role back)
    statement = events.update().where(events.c.id == sa.bindparam("rid"))
    if plain:
        connection.execute(
            statement.values(
                routed_seq=sa.bindparam("seq"),
                conversation_id=sa.bindparam("cid"),
                thread_key=sa.bindparam("key"),
            ),
            plain,
        )
    if rows:
        connection.execute(
            statement.values(
                routed_seq=sa.bindparam("seq"),
                conversation_id=sa.bindparam("cid"),
                thread_key=sa.bindparam("key"),
                skm_id=sa.bindparam("skm"),
                actor_role=sa.func.coalesce(sa.bindparam("role"), events.c.actor_role),
            ),
            rows,
        )
    late = [
        {"rid": row_id, "cid": state.current(c).id, "key": state.current(c).thread_key}
        for row_id, c in state.routes.items()
        if row_id not in in_batch
    ]
    if late:  # events that waited for their message, routed in an earlier batch
        statement = events.update().where(events.c.id == sa.bindparam("rid"))
        connection.execute(
            statement.values(conversation_id=sa.bindparam("cid"), thread_key=sa.bindparam("key")),
            late,
        )

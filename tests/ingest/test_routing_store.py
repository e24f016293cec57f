"""Routing against the real store, in the situations live servers meet: processes whose
flags disagree for a moment, a rebuild run with other flags, another server's idle job in
the middle of a rebuild, statuses of messages never seen, address-book syncs. Events are
written as the writer writes them and routed by the real :class:`Router`, on SQLite and
PostgreSQL."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from tests.api.conftest import make_settings
from tests.routing.events import FIXTURES, PHONE, normalized, status_body, text_body
from wacanon.flags import ShopperFlags
from wacanon.ingest import signals
from wacanon.ingest.pipeline import event_row
from wacanon.ingest.projector import Router
from wacanon.store import conversation_reads as reads
from wacanon.store import routing as store
from wacanon.store.database import create_engine
from wacanon.store.repository import write_events
from wacanon.store.tables import conversations, events

PN = f"{PHONE}@s.whatsapp.net"
T0 = 1772355600


def flags(on: bool) -> ShopperFlags:
    return ShopperFlags(
        canonical=True, shadow=False, routing=on, group_routing=False, assignment_policy="default"
    )


@pytest.fixture
def engine(database_url: str) -> Any:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def router(engine: sa.Engine, tmp_path: Path, *, on: bool = True) -> Router:
    settings = make_settings(str(engine.url), tmp_path, default_shopper_id="shop-1")
    return Router(engine, settings, lambda _: flags(on))


def stored(engine: sa.Engine, *bodies: dict[str, Any], routed_seq: int | None = None) -> None:
    """Evolution webhooks of shop-1, written as the ingest writer writes them."""
    rows = [event_row(e, routed_seq) for e in normalized("evolution", *bodies)]
    with engine.begin() as connection:
        write_events(connection, rows)


def route_all(*routers: Router) -> None:
    for r in routers:
        r.check_flags()
        while r.route_pending():
            pass


def scalar(engine: sa.Engine, query: Any) -> Any:
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()


def test_events_passed_over_by_a_process_a_moment_behind_are_routed(
    engine: sa.Engine, tmp_path: Path
) -> None:
    current, behind = router(engine, tmp_path), router(engine, tmp_path, on=False)
    route_all(current)
    stored(engine, text_body("M1", PN), routed_seq=0)  # gated by the process behind
    stored(engine, text_body("M2", PN, at=T0 + 60))
    behind.route_pending()  # ... which passes this one over too
    route_all(current)
    rows = [
        tuple(r) for r in sa_rows(engine, sa.select(events.c.routed_seq, events.c.conversation_id))
    ]
    assert all(seq and cid for seq, cid in rows), rows


def sa_rows(engine: sa.Engine, query: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(query))


def test_a_rebuild_where_routing_is_off_leaves_the_shopper_as_it_was(
    engine: sa.Engine, tmp_path: Path
) -> None:
    server = router(engine, tmp_path)
    stored(engine, text_body("M1", PN))
    route_all(server)
    before = sa_rows(engine, sa.select(conversations))
    assert router(engine, tmp_path, on=False).rebuild() == {}
    route_all(server)
    assert sa_rows(engine, sa.select(conversations)) == before


def test_another_servers_idle_job_during_a_rebuild_changes_nothing(
    engine: sa.Engine, tmp_path: Path
) -> None:
    r = router(engine, tmp_path)
    now = datetime.fromtimestamp(T0, UTC) + timedelta(hours=100)
    stored(engine, text_body("M1", PN, at=T0), text_body("M2", PN, at=T0 + 36000))
    route_all(r)
    r.close_idle(now)
    live = sa_rows(engine, sa.select(conversations.c.status, conversations.c.closed_at))
    with engine.begin() as connection:  # a rebuild, between two of its batches ...
        store.lock(connection)
        store.reset_shopper(connection, "shop-1")
    r.route_pending(limit=1)
    assert r.close_idle(now) == 0  # ... the minute tick of another server: not yet
    route_all(r)
    r.close_idle(now)
    assert sa_rows(engine, sa.select(conversations.c.status, conversations.c.closed_at)) == live


def test_message_pages_reach_messages_known_only_by_their_status(
    engine: sa.Engine, tmp_path: Path
) -> None:
    bodies = [text_body("M1", PN, at=T0)]
    bodies += [status_body(f"S{i}", PN, "DELIVERY_ACK", at=T0 + i) for i in range(1, 4)]
    bodies.append(text_body("M2", PN, at=T0 + 10))
    stored(engine, *bodies)
    route_all(router(engine, tmp_path))
    conversation = scalar(engine, sa.select(conversations.c.id))
    seen: list[str] = []
    cursor = None
    with engine.connect() as connection:
        while True:
            page = reads.messages_of(connection, conversation, cursor, limit=2)
            seen += [m["message_id"] for m in page.items]
            if (cursor := page.next_cursor) is None:
                break
    assert sorted(seen) == ["M1", "M2", "S1", "S2", "S3"]  # each once, none left out


def test_an_address_book_sync_opens_no_conversation(engine: sa.Engine, tmp_path: Path) -> None:
    sync = orjson.loads((FIXTURES / "contacts_upsert_array.json").read_bytes())
    stored(engine, sync, text_body("M1", PN, at=T0 + 3 * 86400))
    route_all(router(engine, tmp_path))
    opened = sa_rows(engine, sa.select(events.c.event_type).where(
        events.c.event_type.like("whatsapp.conversation.%")
    ))  # fmt: skip
    assert [t for (t,) in opened] == ["whatsapp.conversation.opened"]
    assert scalar(engine, sa.select(sa.func.count()).select_from(conversations)) == 1


@pytest.mark.parametrize("parts", [["2026-03-01T00:00:00+00:00", {"a": 1}], ["x", [1]], [1, 2]])
def test_a_forged_cursor_is_refused_before_any_query(engine: sa.Engine, parts: list[Any]) -> None:
    cursor = base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")
    with engine.connect() as connection:
        for read in (
            lambda: reads.list_conversations(connection, cursor=cursor),
            lambda: reads.messages_of(connection, "x", cursor),
            lambda: reads.events_of(connection, "x", cursor),
            lambda: reads.list_events(connection, cursor=cursor),
        ):
            with pytest.raises(reads.BadCursor):
                read()


def test_lifecycle_signals_fire_after_their_commit(engine: sa.Engine, tmp_path: Path) -> None:
    seen: list[tuple[str, int]] = []

    def opened(sender: str, event: Any, **_: Any) -> None:
        count = sa.select(sa.func.count()).where(events.c.idempotency_key == event.idempotency_key)
        seen.append((event.event_type, scalar(engine, count)))  # visible: committed

    def closed(sender: str, event: Any, **_: Any) -> None:
        seen.append((event.event_type, 1))

    signals.conversation_opened.connect(opened)
    signals.conversation_closed.connect(closed)
    try:
        r = router(engine, tmp_path)
        stored(engine, text_body("M1", PN, at=T0))
        route_all(r)
        r.close_idle(datetime.fromtimestamp(T0, UTC) + timedelta(days=2))
    finally:
        signals.conversation_opened.disconnect(opened)
        signals.conversation_closed.disconnect(closed)
    assert seen == [("whatsapp.conversation.opened", 1), ("whatsapp.conversation.closed", 1)]


def test_a_batch_read_before_another_commits_is_never_written(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """Batches are read and projected outside the lock; what route_pending relies on: any
    batch or reset committed meanwhile changes the sequence number the write checks."""
    first, second = router(engine, tmp_path), router(engine, tmp_path)
    for message, interfere in (("M1", second.route_pending), ("M2", lambda: _reset(engine))):
        stored(engine, text_body(message, PN, at=T0))
        with engine.connect() as reading:
            seen = store.current_seq(reading)
            assert first._plan(reading, 500, seen) is not None
        interfere()
        with engine.begin() as connection:
            assert store.lock(connection) != seen
    route_all(first, second)
    assert scalar(engine, sa.select(sa.func.count()).select_from(conversations)) == 1
    opened = sa.select(sa.func.count()).where(events.c.event_type == "whatsapp.conversation.opened")
    assert scalar(engine, opened) == 1


def _reset(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        store.lock(connection)
        store.reset_shopper(connection, "shop-1")


def test_a_close_by_command_during_a_rebuild_applies_to_the_rebuilt_conversation(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """Another process's rebuild has routed part of the queue when an operator closes the
    conversation: the close waits for what is queued (an earlier close by command among
    it, replayed), then closes what the events make — stored and signalled, never
    swallowed as a duplicate of the replayed one."""
    sent: list[str] = []

    def closed(sender: str, event: Any, **_: Any) -> None:
        sent.append(event.event_type)

    r = router(engine, tmp_path)
    stored(engine, text_body("M1", PN, at=T0))
    route_all(r)
    conversation = scalar(engine, sa.select(conversations.c.id))
    assert r.close_conversation(conversation, datetime.fromtimestamp(T0 + 60, UTC))
    stored(engine, text_body("M2", PN, at=T0 + 120))  # reopens it
    route_all(r)
    _reset(engine)  # a rebuild, elsewhere, between its batches ...
    r.route_pending(limit=1)
    signals.conversation_closed.connect(closed)
    try:
        assert r.close_conversation(conversation, datetime.fromtimestamp(T0 + 600, UTC))
    finally:
        signals.conversation_closed.disconnect(closed)
    assert sent == ["whatsapp.conversation.closed"]
    closes = sa.select(events.c.routed_seq).where(
        events.c.provider_event == "wacanon.command.close"
    )
    assert sorted(seq for (seq,) in sa_rows(engine, closes)) != [None, None]
    assert all(seq for (seq,) in sa_rows(engine, closes))  # both applied, none left queued
    state = sa.select(conversations.c.status, conversations.c.opens)
    assert sa_rows(engine, state) == [("closed", 2)]


def test_a_batch_that_only_passes_events_over_counts_as_a_step(
    engine: sa.Engine, tmp_path: Path
) -> None:
    stored(engine, text_body("M1", PN, at=T0))
    with engine.connect() as connection:
        before = store.current_seq(connection)
    router(engine, tmp_path, on=False).route_pending()
    with engine.connect() as connection:
        assert store.current_seq(connection) != before


def test_an_event_that_waited_across_batches_applies_in_full_when_its_message_arrives(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """A customer's edit as Evolution reports it (our number in the chat) is routed before
    the message it edits: it waits, stored; when the message comes, in a later batch, the
    edit joins its conversation and counts (its time is the conversation's last event)."""
    edit = orjson.loads((FIXTURES / "messages_edited_customer_author_view.json").read_bytes())
    edit["data"]["key"]["id"] = "M1"
    edit["data"]["timestampMs"] = str((T0 + 30) * 1000)
    r = router(engine, tmp_path)
    stored(engine, edit)
    route_all(r)
    assert scalar(engine, sa.select(sa.func.count()).select_from(conversations)) == 0
    stored(engine, text_body("M1", PN, at=T0))
    route_all(r)
    (conversation, last) = sa_rows(
        engine, sa.select(conversations.c.id, conversations.c.last_event_at)
    )[0]
    joined = sa.select(events.c.conversation_id).where(
        events.c.event_type == "whatsapp.message.edited"
    )
    assert scalar(engine, joined) == conversation
    assert last.replace(tzinfo=UTC) == datetime.fromtimestamp(T0 + 30, UTC)

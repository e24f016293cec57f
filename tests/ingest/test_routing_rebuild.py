"""Conversations are a projection of the event log: ``rebuild`` gives what live routing
gave, on a 5,000-webhook simulated stream posted to the live server (issue #7 §2)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.api.conftest import make_settings
from tests.ingest.test_durability import _free_port, _start_server, post_many, serve_config
from tests.ingest.test_routing_live import ROUTING_ON, wait_routed
from wacanon.ingest.flag_cache import FlagCache
from wacanon.ingest.projector import Router
from wacanon.simulate import SimulationOptions, generate
from wacanon.store.database import create_engine
from wacanon.store.tables import conversations, events, identities, messages, participants

WEBHOOKS = 5000


def snapshot(url: str) -> dict[str, Any]:
    """Everything routing derives, without what differs by construction between runs
    (the order numbers and row ids it gave, the lifecycle events' receipt time)."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return {
                "conversations": sorted(tuple(r) for r in c.execute(sa.select(conversations))),
                "participants": sorted(tuple(r) for r in c.execute(sa.select(participants))),
                "messages": sorted(tuple(r) for r in c.execute(sa.select(messages))),
                "identities": sorted(tuple(r) for r in c.execute(sa.select(identities))),
                "events": sorted(
                    tuple(r)
                    for r in c.execute(
                        sa.select(
                            events.c.idempotency_key,
                            events.c.event_type,
                            events.c.occurred_at,
                            events.c.conversation_id,
                            events.c.thread_key,
                        )
                    )
                ),
            }
    finally:
        engine.dispose()


def test_rebuild_gives_what_live_routing_gave(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ROUTING_ON.items():
        monkeypatch.setenv(name, value)
    port = _free_port()
    server = _start_server(serve_config(tmp_path, database_url), port, tmp_path / "serve.log")
    try:
        options = SimulationOptions(count=WEBHOOKS, seed=7, shoppers=2)
        bodies = list(generate(options))
        replies = asyncio.run(post_many(f"http://127.0.0.1:{port}", bodies, concurrency=16))
        assert {r.status_code for r in replies} == {200}
        stored = sum(r.json()["events"] for r in replies)
        wait_routed(database_url, expected_events=stored, timeout=60)
    finally:
        server.terminate()
        server.wait(20)
    settings = make_settings(database_url, tmp_path, default_shopper_id="shop-1")
    engine = create_engine(database_url)
    try:
        flags = FlagCache(engine, {**os.environ, **ROUTING_ON}, 1.0)
        flags.refresh()
        router = Router(engine, settings, flags.for_shopper)
        router.close_idle()  # what the server does within a minute: the stream is old
        live = snapshot(database_url)
        assert len(live["conversations"]) > 20
        assert any(row[1] == "whatsapp.conversation.opened" for row in live["events"])
        queued = router.rebuild()
        assert sum(queued.values()) > 0
    finally:
        engine.dispose()
    rebuilt = snapshot(database_url)
    for part in live:
        assert rebuilt[part] == live[part], part

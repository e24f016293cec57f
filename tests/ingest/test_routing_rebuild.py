"""A 5,000-webhook simulated stream posted to the live server (issue #7 §2 and §6): routing
gives exactly the conversations the generator says it must (customers switching from a
LID or a BSUID to their phone, albums posted concurrently, idle days included), and
``rebuild`` — conversations are a projection of the event log — gives what live routing
gave."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.ingest.test_durability import _free_port, _start_server, post_many, serve_config
from tests.ingest.test_routing_live import ROUTING_ON, fetch, router_of, snapshot, wait_routed
from wacanon.simulate import SimulationOptions, expected_conversations, generate
from wacanon.store.tables import events

WEBHOOKS = 5000


def test_rebuild_gives_what_live_routing_gave(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ROUTING_ON.items():
        monkeypatch.setenv(name, value)
    port = _free_port()
    config = serve_config(tmp_path, database_url)
    with config.open("a") as text:  # the simulated accounts' shoppers, as a first trial has them
        for n in (1, 2):
            text.write(
                f'[[accounts]]\nprovider = "simulated"\naccount_id = "sim-shop-{n}-main"\n'
                f'shopper_id = "shop-{n}"\n'
            )
    server = _start_server(config, port, tmp_path / "serve.log")
    options = SimulationOptions(count=WEBHOOKS, seed=7, shoppers=2, customers_per_shopper=150)
    try:
        bodies = list(generate(options))
        replies = asyncio.run(post_many(f"http://127.0.0.1:{port}", bodies, concurrency=16))
        assert {r.status_code for r in replies} == {200}
        stored = sum(r.json()["events"] for r in replies)
        wait_routed(database_url, expected_events=stored, timeout=60)
    finally:
        server.terminate()
        server.wait(20)
    router, engine = router_of(database_url, tmp_path)
    try:
        router.close_idle()  # what the server does within a minute: the stream is old
        live = snapshot(database_url)
        per_shopper = Counter(row[2] for row in live["conversations"] if row[8] != "merged")
        assert dict(per_shopper) == expected_conversations(options)
        customers = {(row[0], row[2]) for row in live["identities"]}
        assert len(live["identities"]) > len(customers)  # LID / BSUID linked to phones
        assert any(row[1] == "whatsapp.conversation.opened" for row in live["events"])
        lifecycle = sa.select(events.c.id, events.c.idempotency_key, events.c.received_at)
        lifecycle = lifecycle.where(events.c.provider_event.like("wacanon.%"))
        rows_before = set(fetch(database_url, lifecycle))
        queued = router.rebuild()
        assert sum(queued.values()) > 0
    finally:
        engine.dispose()
    rebuilt = snapshot(database_url)
    for part in live:
        assert rebuilt[part] == live[part], part
    # the same rows: a consumer reading the event feed by id sees nothing twice
    assert set(fetch(database_url, lifecycle)) == rows_before

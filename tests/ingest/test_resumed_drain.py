"""Two `wacanon serve` processes on one PostgreSQL: one drains a webhook whose earlier
attempt stored part of its rows, while providers redeliver the same facts to both.

Whoever stores a row first, each event is counted new exactly once across the journal:
the drained webhook claims only rows stored under its own correlation id, and no
redelivery ever counts them again.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from tests.api.conftest import sim_body, sim_message
from tests.api.test_webhooks import rows
from tests.conftest import _clean
from tests.ingest.test_durability import _free_port, _start_server, post_many, serve_config
from wacanon.config import Settings
from wacanon.flags import ShopperFlags
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Received
from wacanon.ingest.spool import Spool
from wacanon.store.database import create_engine
from wacanon.store.repository import write_events
from wacanon.store.tables import events, webhook_journal

STORE = ShopperFlags(
    canonical=True, shadow=False, routing=False, group_routing=False, assignment_policy="default"
)
FACTS = 20
REDELIVERIES = 10  # per server


def test_a_drained_webhook_and_redeliveries_on_two_servers_count_each_event_once(
    postgres_server: str, tmp_path: Path
) -> None:
    _clean(postgres_server)
    body = sim_body(*(sim_message(f"RESUME-{i:02d}", text=f"Olá {i} 👟") for i in range(FACTS)))
    received = Received("simulated", body, os.urandom(16).hex(), datetime.now(UTC), True)
    settings = Settings(database_url=postgres_server, default_shopper_id="shop-1")
    original = Pipeline(settings, lambda _: STORE, Metrics()).plan(received)
    engine = create_engine(postgres_server)
    try:
        with engine.begin() as connection:  # the interrupted attempt: its first part only
            write_events(connection, original.write.events[: FACTS // 2])
    finally:
        engine.dispose()
    config = serve_config(tmp_path, postgres_server)
    spool = Spool(tmp_path / "spool")
    spool.append([received.spool_record()])  # spooled whole
    spool.close()
    ports = [_free_port(), _free_port()]
    servers = [_start_server(config, port, tmp_path / f"server-{port}.log") for port in ports]
    try:

        async def redeliver() -> None:
            await asyncio.gather(
                *(
                    post_many(f"http://127.0.0.1:{port}", [body] * REDELIVERIES, concurrency=4)
                    for port in ports
                )
            )

        asyncio.run(redeliver())
        expected_journal = 1 + 2 * REDELIVERIES
        deadline = time.monotonic() + 30
        while len(rows(postgres_server, webhook_journal)) < expected_journal:
            assert time.monotonic() < deadline, "the spooled webhook was not drained"
            time.sleep(0.2)
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
    journal = rows(postgres_server, webhook_journal)
    assert len(journal) == expected_journal
    assert {r.outcome for r in journal} == {"stored"}
    assert sum(r.events_new for r in journal) == FACTS  # each event new exactly once
    assert all(r.events_new + r.duplicates == FACTS for r in journal)
    (drained,) = [r for r in journal if r.correlation_id == received.correlation_id]
    assert drained.events_new >= FACTS // 2  # at least the parts it stored itself
    engine = create_engine(postgres_server)
    try:
        with engine.connect() as connection:
            count = connection.execute(sa.select(sa.func.count()).select_from(events))
            assert count.scalar_one() == FACTS
    finally:
        engine.dispose()

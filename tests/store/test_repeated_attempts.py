"""A webhook written again after an interrupted attempt claims the rows that attempt stored.

A large webhook is written in parts; if the database goes away after some parts
committed, the whole webhook is spooled and drained later. The rows of its earlier parts
were stored by this very delivery (same correlation id): they are new events of this
webhook — counted and signalled as stored — not duplicates. A redelivery (another
correlation id) of the same facts still finds duplicates.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import sqlalchemy as sa

from tests.api.conftest import sim_body, sim_message
from wacanon.config import Settings
from wacanon.flags import ShopperFlags
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Received
from wacanon.store.database import create_engine
from wacanon.store.repository import write_batch, write_events
from wacanon.store.tables import webhook_journal

STORE = ShopperFlags(
    canonical=True, shadow=False, routing=False, group_routing=False, assignment_policy="default"
)


def received(body: bytes) -> Received:
    return Received("simulated", body, os.urandom(16).hex(), datetime.now(UTC), True)


def test_rows_of_an_interrupted_attempt_are_this_webhook_s_own(database_url: str) -> None:
    settings = Settings(database_url=database_url, default_shopper_id="shop-1")
    pipeline = Pipeline(settings, lambda _: STORE, Metrics())
    body = sim_body(*(sim_message(f"m-{i}", text=f"Olá {i} 👟") for i in range(3)))
    first = pipeline.plan(received(body))
    keys = {row["idempotency_key"] for row in first.write.events}
    assert len(keys) == 3
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:  # the attempt that was interrupted: one part only
            assert len(write_events(connection, first.write.events[:2])) == 2
        drained, _ = pipeline.replan(first.received.spool_record())  # as the drain does
        with engine.begin() as connection:  # the same delivery, drained from the spool
            (result,) = write_batch(connection, [drained])
        assert result.new_keys == keys
        assert result.journaled
        redelivery = pipeline.plan(received(body))
        with engine.begin() as connection:
            (again,) = write_batch(connection, [redelivery.write])
        assert again.new_keys == set()
        with engine.connect() as connection:
            counts = connection.execute(
                sa.select(
                    webhook_journal.c.correlation_id,
                    webhook_journal.c.events_new,
                    webhook_journal.c.duplicates,
                )
            ).all()
        by_id = {c: (new, dup) for c, new, dup in counts}
        assert by_id[first.received.correlation_id] == (3, 0)
        assert by_id[redelivery.received.correlation_id] == (0, 3)
    finally:
        engine.dispose()


def test_in_one_batch_the_replayed_delivery_claims_its_rows_not_a_redelivery_before_it(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url, default_shopper_id="shop-1")
    pipeline = Pipeline(settings, lambda _: STORE, Metrics())
    body = sim_body(*(sim_message(f"m-{i}") for i in range(2)))
    original, redelivery = pipeline.plan(received(body)), pipeline.plan(received(body))
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            write_events(connection, original.write.events[:1])
        drained, _ = pipeline.replan(original.received.spool_record())
        with engine.begin() as connection:
            first, second = write_batch(connection, [redelivery.write, drained])
        keys = [row["idempotency_key"] for row in original.write.events]
        # The redelivery inserts the row nobody stored yet; the stored one is the original's.
        assert first.new_keys == {keys[1]}
        assert second.new_keys == {keys[0]}
    finally:
        engine.dispose()


def test_a_webhook_already_journaled_finds_its_rows_as_duplicates(database_url: str) -> None:
    """A stored webhook written again under its own correlation id — drained from the
    spool after its commit went through but its answer was lost, or ``wacanon replay`` —
    stores nothing new, and says so."""
    settings = Settings(database_url=database_url, default_shopper_id="shop-1")
    pipeline = Pipeline(settings, lambda _: STORE, Metrics())
    stored = pipeline.plan(received(sim_body(sim_message("m-1"))))
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            (first,) = write_batch(connection, [stored.write])
        drained, _ = pipeline.replan(stored.received.spool_record())
        with engine.begin() as connection:
            (again,) = write_batch(connection, [drained])
        assert len(first.new_keys) == 1
        assert first.journaled
        assert again.new_keys == set()
        assert not again.journaled
    finally:
        engine.dispose()


def test_a_live_redelivery_costs_no_lookup(database_url: str) -> None:
    """A live webhook has a fresh correlation id, so no earlier attempt can be its own:
    a redelivery is two INSERTs, like a first delivery, with no extra query."""
    settings = Settings(database_url=database_url, default_shopper_id="shop-1")
    pipeline = Pipeline(settings, lambda _: STORE, Metrics())
    body = sim_body(sim_message("m-1"))
    engine = create_engine(database_url)
    statements: list[str] = []
    try:
        with engine.begin() as connection:
            write_batch(connection, [pipeline.plan(received(body)).write])
        sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        with engine.begin() as connection:
            (again,) = write_batch(connection, [pipeline.plan(received(body)).write])
        assert again.new_keys == set()
        assert [s.split()[0] for s in statements] == ["INSERT", "INSERT"]
    finally:
        engine.dispose()

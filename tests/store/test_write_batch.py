"""Which keys a batch stored: exact whatever the mix of new events, events stored before
and redeliveries inside the batch (SQLite finds them without ``RETURNING``)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import sqlalchemy as sa

from tests.api.conftest import sim_body, sim_message
from wacanon.config import Settings
from wacanon.flags import ShopperFlags
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Plan, Received
from wacanon.store.database import create_engine
from wacanon.store.repository import write_batch
from wacanon.store.tables import events, webhook_journal

STORE = ShopperFlags(
    canonical=True, shadow=False, routing=False, group_routing=False, assignment_policy="default"
)


def planned(pipeline: Pipeline, *ids: str) -> Plan:
    body = sim_body(*(sim_message(i, text=f"Oi {i} 👟") for i in ids))
    return pipeline.plan(Received("simulated", body, os.urandom(16).hex(), datetime.now(UTC), True))


def keys(plan: Plan) -> set[str]:
    return {row["idempotency_key"] for row in plan.write.events}


def test_a_batch_mixing_new_stored_and_repeated_events_gets_each_key_right(
    database_url: str,
) -> None:
    pipeline = Pipeline(
        Settings(database_url=database_url, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    engine = create_engine(database_url)
    try:
        earlier = planned(pipeline, "m-1", "m-2")
        with engine.begin() as connection:
            (first,) = write_batch(connection, [earlier.write])
        assert first.new_keys == keys(earlier)

        fresh = planned(pipeline, "m-3", "m-4")
        mixed = planned(pipeline, "m-2", "m-5")  # one stored before, one new
        twice = planned(pipeline, "m-5", "m-6")  # m-5 also in `mixed`, earlier in the batch
        with engine.begin() as connection:
            results = write_batch(connection, [fresh.write, mixed.write, twice.write])
        by_message = {
            row["provider_message_id"]: row["idempotency_key"]
            for plan in (fresh, mixed, twice)
            for row in plan.write.events
        }
        assert [r.new_keys for r in results] == [
            keys(fresh),
            {by_message["m-5"]},
            {by_message["m-6"]},
        ]
        assert all(r.journaled for r in results)

        with engine.begin() as connection:  # all stored: nothing is new
            (again,) = write_batch(connection, [planned(pipeline, "m-1", "m-6").write])
        assert again.new_keys == set()
        with engine.connect() as connection:
            stored = connection.execute(sa.select(sa.func.count()).select_from(events)).scalar()
            counts = dict(
                connection.execute(
                    sa.select(webhook_journal.c.correlation_id, webhook_journal.c.events_new)
                ).all()
            )
        assert stored == 6
        assert sorted(counts.values()) == [0, 1, 1, 2, 2]
    finally:
        engine.dispose()

"""Which keys a batch stored: exact whatever the mix of new events, events stored before
and redeliveries inside the batch (SQLite finds them without ``RETURNING``), written in a
transaction (``write_batch``) or, on PostgreSQL, as the writer usually writes it: one
statement committed by itself (``write_batch_at_once``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.api.conftest import sim_body, sim_message
from wacanon.config import Settings
from wacanon.flags import ShopperFlags
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Plan, Received
from wacanon.store.database import create_engine
from wacanon.store.repository import (
    DeadLetter,
    WebhookWrite,
    WriteResult,
    fits_one_statement,
    write_batch,
    write_batch_at_once,
    write_events,
)
from wacanon.store.tables import dead_letters, events, webhook_journal

Write = Callable[[Sequence[WebhookWrite]], list[WriteResult]]

STORE = ShopperFlags(
    canonical=True, shadow=False, routing=False, group_routing=False, assignment_policy="default"
)


def planned(pipeline: Pipeline, *ids: str) -> Plan:
    body = sim_body(*(sim_message(i, text=f"Oi {i} 👟") for i in ids))
    return pipeline.plan(Received("simulated", body, os.urandom(16).hex(), datetime.now(UTC), True))


def keys(plan: Plan) -> set[str]:
    return {row["idempotency_key"] for row in plan.write.events}


@pytest.fixture(params=["in a transaction", "at once"])
def write(request: pytest.FixtureRequest, database_url: str) -> Iterator[Write]:
    """Writes a batch one of the two ways, and commits it."""
    at_once = request.param == "at once"
    if at_once and not database_url.startswith("postgresql"):
        pytest.skip("one statement for a batch is PostgreSQL's")
    engine = create_engine(database_url)

    def run(writes: Sequence[WebhookWrite]) -> list[WriteResult]:
        if not at_once:
            with engine.begin() as connection:
                return write_batch(connection, writes)
        assert fits_one_statement("postgresql", writes)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return write_batch_at_once(connection, writes)

    yield run
    engine.dispose()


def test_a_batch_mixing_new_stored_and_repeated_events_gets_each_key_right(
    database_url: str, write: Write
) -> None:
    pipeline = Pipeline(
        Settings(database_url=database_url, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    engine = create_engine(database_url)
    try:
        earlier = planned(pipeline, "m-1", "m-2")
        (first,) = write([earlier.write])
        assert first.new_keys == keys(earlier)

        fresh = planned(pipeline, "m-3", "m-4")
        mixed = planned(pipeline, "m-2", "m-5")  # one stored before, one new
        twice = planned(pipeline, "m-5", "m-6")  # m-5 also in `mixed`, earlier in the batch
        results = write([fresh.write, mixed.write, twice.write])
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

        (again,) = write([planned(pipeline, "m-1", "m-6").write])  # all stored: nothing new
        assert again.new_keys == set()
        with engine.connect() as connection:
            stored = connection.execute(sa.select(sa.func.count()).select_from(events)).scalar()
            counts = connection.execute(
                sa.select(webhook_journal.c.events_new, webhook_journal.c.duplicates)
            ).all()
        assert stored == 6
        assert sorted(map(tuple, counts)) == [(0, 2), (1, 1), (1, 1), (2, 0), (2, 0)]
    finally:
        engine.dispose()


def test_a_repeated_event_inside_one_webhook_is_stored_once(
    database_url: str, write: Write
) -> None:
    pipeline = Pipeline(
        Settings(database_url=database_url, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    plan = planned(pipeline, "r-1", "r-1", "r-2")
    assert len(plan.write.events) == 3
    (result,) = write([plan.write])
    assert result.new_keys == keys(plan)
    assert len(result.new_keys) == 2
    engine = create_engine(database_url)
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(webhook_journal.c.events_new, webhook_journal.c.duplicates)
        ).one()
    engine.dispose()
    assert tuple(row) == (2, 1)


def test_dead_letters_and_texts_with_nul_are_written_with_their_journal_rows(
    database_url: str, write: Write
) -> None:
    pipeline = Pipeline(
        Settings(database_url=database_url, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    lettered = planned(pipeline, "d-1")
    lettered.write.dead_letter = DeadLetter(kind="unrecognized", error="bad\x00part")
    nul = planned(pipeline, "d-2\x00x")
    empty = planned(pipeline)  # no event at all
    results = write([lettered.write, nul.write, empty.write])
    assert [len(r.new_keys) for r in results] == [1, 1, 0]
    assert all(r.journaled for r in results)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        letters = connection.execute(
            sa.select(dead_letters.c.correlation_id, dead_letters.c.error, dead_letters.c.body)
        ).all()
        ids = set(connection.execute(sa.select(events.c.provider_message_id)).scalars())
    engine.dispose()
    journal = lettered.write.journal
    assert [tuple(r) for r in letters] == [(journal.correlation_id, "bad\ufffdpart", journal.body)]
    assert ids == {"d-1", "d-2\ufffdx"}


def test_a_value_the_database_refuses_writes_nothing_of_the_batch(
    database_url: str, write: Write
) -> None:
    pipeline = Pipeline(
        Settings(database_url=database_url, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite does not enforce lengths")
    good, bad = planned(pipeline, "v-1"), planned(pipeline, "v-2")
    bad.write.journal.provider = "p" * 40  # over String(32)
    with pytest.raises(sa.exc.DataError):
        write([good.write, bad.write])
    engine = create_engine(database_url)
    with engine.connect() as connection:
        stored = [connection.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                  for t in (events, webhook_journal)]  # fmt: skip
    engine.dispose()
    assert stored == [0, 0]


def test_two_writers_sharing_keys_wait_for_each_other_without_a_deadlock(
    postgres_server: str,
) -> None:
    """Writer B holds key `low` (uncommitted) when writer A's batch brings `high` then
    `low`: A took `high` and waited for `low`; B then wrote `high` and waited for A —
    PostgreSQL's "deadlock detected", and a whole batch went to the spool (a test of two
    servers delivering the same facts at once saw it). Rows go in key order: A waits for
    `low` before it takes `high`, and both finish."""
    import threading

    from tests.conftest import _clean

    _clean(postgres_server)
    pipeline = Pipeline(
        Settings(database_url=postgres_server, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    rows = planned(pipeline, "d-1", "d-2").write.events
    low, high = sorted(rows, key=lambda row: row["idempotency_key"])
    engine = create_engine(postgres_server)
    failures: list[BaseException] = []

    def writer_a() -> None:
        try:
            with engine.begin() as connection:
                write_events(connection, [high, low])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    b = engine.connect()
    try:
        b.begin()
        write_events(b, [low])
        a = threading.Thread(target=writer_a)
        a.start()
        time.sleep(0.5)  # A is waiting for `low`
        try:
            write_events(b, [high])
            b.commit()
        except sa.exc.DBAPIError as exc:
            failures.append(exc)
            b.rollback()
        a.join(10)
    finally:
        b.close()
        engine.dispose()
    assert failures == []

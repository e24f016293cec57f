"""The group-commit writer keeps going: a broken webhook is set aside alone, the thread survives."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.store.test_write_batch import STORE, keys, planned
from wacanon.config import Settings
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Plan
from wacanon.ingest.spool import Spool, SpoolRecord
from wacanon.ingest.writer import GroupCommitWriter, Job, Outcome
from wacanon.store.database import create_engine, upgrade
from wacanon.store.repository import (
    EVENT_COLUMNS,
    JournalRow,
    WebhookWrite,
    WriteResult,
    write_batch,
    write_batch_at_once,
    write_events,
)
from wacanon.store.tables import events, webhook_journal


class _Source:
    def spool_record(self) -> SpoolRecord:
        raise AssertionError("the database is up: nothing should be spooled")


def journal(correlation_id: str) -> JournalRow:
    return JournalRow(
        correlation_id=correlation_id,
        received_at=datetime(2026, 3, 1, tzinfo=UTC),
        provider="simulated",
        body=b"{}",
        body_sha256="0" * 64,
        signature_valid=True,
        outcome="ignored",
    )


def _no_replan(_: SpoolRecord) -> tuple[WebhookWrite, object]:
    raise AssertionError("no spool to drain")


def _commit(writer: GroupCommitWriter, write: WebhookWrite) -> WriteResult:
    """One webhook through the writer; its answer, which must be a stored result."""
    answered: list[Outcome] = []
    done = threading.Event()
    writer.expect()
    writer.submit(Job(write, _Source(), lambda o: (answered.append(o), done.set())))
    assert done.wait(20), "no answer"
    assert isinstance(answered[0], WriteResult)
    return answered[0]


def _parts_writer(url: str, tmp_path: Path) -> tuple[sa.Engine, Pipeline, GroupCommitWriter]:
    """A started writer that writes webhooks of more than 2 events in parts."""
    engine = create_engine(url)
    pipeline = Pipeline(
        Settings(database_url=url, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    writer = GroupCommitWriter(
        engine, Spool(tmp_path / "spool"), _no_replan, lambda _: None, max_rows=2
    )
    writer.start()
    return engine, pipeline, writer


def _cut_the_connection_of(writer: GroupCommitWriter, engine: sa.Engine) -> None:
    """PostgreSQL ends the writer's kept connection, as a server restart would."""
    assert writer._connection is not None
    pid = writer._connection.connection.driver_connection.info.backend_pid
    with engine.connect() as admin:
        admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})


#: Rows no normalizer makes, each failing its own way: a row missing every other column
#: (KeyError), and times that are text where the store expects a datetime (a bug of ours:
#: AttributeError) — the webhook's own problem, never a reason to spool everything.
BROKEN_ROWS = {
    "missing_columns": {"idempotency_key": "k"},
    "text_for_a_time": dict.fromkeys(EVENT_COLUMNS, "not a time") | {"idempotency_key": "k"},
}


@pytest.mark.parametrize("broken", BROKEN_ROWS.values(), ids=list(BROKEN_ROWS))
def test_an_unexpected_error_dead_letters_its_webhook_and_the_writer_goes_on(
    tmp_path: Path, broken: dict[str, Any]
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade(engine)

    writer = GroupCommitWriter(engine, Spool(tmp_path / "spool"), _no_replan, lambda _: None)
    writer.start()
    outcomes: list[Outcome] = []
    done = threading.Event()

    def collect(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 2:
            done.set()

    writer.expect()
    writer.submit(Job(WebhookWrite(journal("c-1"), events=[broken]), _Source(), collect))
    assert done.wait(0.0) is False
    writer.expect()
    writer.submit(Job(WebhookWrite(journal("c-2")), _Source(), collect))
    assert done.wait(10), "the writer stopped answering"
    writer.stop()
    engine.dispose()
    # The broken webhook is kept as a store_error dead letter (journal row, raw body).
    assert isinstance(outcomes[0], WriteResult)
    assert outcomes[0].refused is not None
    assert outcomes[0].journaled
    assert isinstance(outcomes[1], WriteResult)
    assert outcomes[1].journaled
    assert outcomes[1].refused is None


def test_a_dropped_connection_neither_loses_a_batch_nor_calls_its_events_duplicates(
    postgres_server: str, tmp_path: Path
) -> None:
    """PostgreSQL: the writer's kept connection is cut between commits. The next batch is
    written on a fresh one; and a batch the database had committed although its answer
    never came (written here beforehand, as the cut statement would have been) is found,
    with its events new — not written again and answered as duplicates."""
    url = postgres_server
    engine = create_engine(url)
    pipeline = Pipeline(
        Settings(database_url=url, default_shopper_id="s"), lambda _: STORE, Metrics()
    )

    writer = GroupCommitWriter(engine, Spool(tmp_path / "spool"), _no_replan, lambda _: None)
    writer.start()

    try:
        first = planned(pipeline, "c-1")
        outcome = _commit(writer, first.write)
        assert outcome.new_keys == keys(first)

        _cut_the_connection_of(writer, engine)
        fresh = planned(pipeline, "c-2", "c-3")
        outcome = _commit(writer, fresh.write)
        assert outcome.new_keys == keys(fresh)
        assert outcome.journaled

        _cut_the_connection_of(writer, engine)
        landed = planned(pipeline, "c-4")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as other:
            write_batch_at_once(other, [landed.write])  # committed; the answer "lost"
        outcome = _commit(writer, landed.write)
        assert outcome.new_keys == keys(landed)
        assert outcome.journaled
        with engine.connect() as connection:
            ids = [p.write.journal.correlation_id for p in (first, fresh, landed)]
            rows = connection.execute(
                sa.select(webhook_journal.c.events_new, webhook_journal.c.duplicates).where(
                    webhook_journal.c.correlation_id.in_(ids)
                )
            ).all()
        assert sorted(map(tuple, rows)) == [(1, 0), (1, 0), (2, 0)]
    finally:
        writer.stop()
        engine.dispose()


def test_a_commit_whose_answer_was_lost_is_found_in_a_transaction_too(
    postgres_server: str, tmp_path: Path
) -> None:
    """PostgreSQL, the writes that take a transaction (not one statement): a part of a
    large webhook, and the last part with its journal row. Each was committed although
    its connection dropped before the answer (done here beforehand on another
    connection, then the writer's connection is cut); the writer finds what it did
    instead of sending it again — sent again, the webhook's own events came back as
    duplicates (and the last part as not journaled)."""
    engine, pipeline, writer = _parts_writer(postgres_server, tmp_path)

    def counts(plan: Plan) -> tuple[int, int]:
        with engine.connect() as connection:
            row = connection.execute(
                sa.select(webhook_journal.c.events_new, webhook_journal.c.duplicates).where(
                    webhook_journal.c.correlation_id == plan.write.journal.correlation_id
                )
            ).one()
        return row[0], row[1]

    try:
        _commit(writer, planned(pipeline, "warm-up").write)  # the writer's connection, to cut

        large = planned(pipeline, *(f"l-{i}" for i in range(5)))  # parts of 2, 2 and 1
        with engine.begin() as other:  # its first part committed; the answer "lost"
            write_events(other, large.write.events[:2])
        _cut_the_connection_of(writer, engine)
        outcome = _commit(writer, large.write)
        assert outcome.new_keys == keys(large)
        assert counts(large) == (5, 0)

        two = planned(pipeline, "t-1", "t-2")
        first, rest = two.write.events[:1], two.write.events[1:]
        last = dataclasses.replace(
            two.write, events=rest, stored_before={first[0]["idempotency_key"]}, rows_before=1
        )
        with engine.begin() as other:  # the last part committed; the answer "lost"
            write_events(other, first)
            write_batch(other, [last])
        _cut_the_connection_of(writer, engine)
        outcome = _commit(writer, last)
        assert outcome.journaled
        assert outcome.new_keys == keys(two)
        assert counts(two) == (2, 0)
    finally:
        writer.stop()
        engine.dispose()


def test_a_part_that_did_not_commit_is_sent_again_though_an_earlier_part_shares_a_key(
    postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook carrying one fact twice, in two parts (a, b | a, c | e): the first part
    stored a and b; the connection drops before the second is sent. a is stored under the
    webhook's correlation id, yet by the first part: the second did not commit, and is
    sent again (it was taken as committed and c was never stored, the webhook answered
    200)."""
    engine, pipeline, writer = _parts_writer(postgres_server, tmp_path)
    try:
        _commit(writer, planned(pipeline, "warm-up").write)
        large = planned(pipeline, "r-a", "r-b", "r-a", "r-c", "r-e")
        write_part = writer._write_events
        parts: list[int] = []

        def cut_before_the_second_part(rows: list[dict[str, Any]], *rest: Any) -> set[str]:
            parts.append(len(rows))
            if len(parts) == 2:  # the kept connection ends between the parts (a restart)
                _cut_the_connection_of(writer, engine)
            return write_part(rows, *rest)

        monkeypatch.setattr(writer, "_write_events", cut_before_the_second_part)
        outcome = _commit(writer, large.write)
        with engine.connect() as connection:
            stored = set(
                connection.execute(
                    sa.select(events.c.idempotency_key).where(
                        events.c.correlation_id == large.write.journal.correlation_id
                    )
                ).scalars()
            )
    finally:
        writer.stop()
        engine.dispose()
    assert parts == [2, 2]
    assert stored == keys(large)
    assert outcome.new_keys == keys(large)


def test_the_writer_counts_each_part_of_a_large_webhook_as_progress(tmp_path: Path) -> None:
    """What the writer process's beat reads: a webhook written in 20 parts moves it 20
    times before its one answer."""
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade(engine)
    pipeline = Pipeline(
        Settings(database_url=str(engine.url), default_shopper_id="s"), lambda _: STORE, Metrics()
    )

    writer = GroupCommitWriter(
        engine, Spool(tmp_path / "spool"), _no_replan, lambda _: None, max_rows=10
    )
    writer.start()
    large = planned(pipeline, *(f"p-{i}" for i in range(200)))
    done = threading.Event()
    answers: list[Outcome] = []
    before = writer.progress
    writer.expect()
    writer.submit(Job(large.write, _Source(), lambda o: (answers.append(o), done.set())))
    assert done.wait(20)
    writer.stop()
    engine.dispose()
    assert isinstance(answers[0], WriteResult)
    assert len(answers[0].new_keys) == 200
    assert writer.progress - before >= 20

"""The group-commit writer keeps going: a broken webhook is set aside alone, the thread survives."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wacanon.ingest.spool import Spool, SpoolRecord
from wacanon.ingest.writer import GroupCommitWriter, Job, Outcome
from wacanon.store.database import create_engine, upgrade
from wacanon.store.repository import EVENT_COLUMNS, JournalRow, WebhookWrite, WriteResult


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

    def no_replan(_: SpoolRecord) -> tuple[WebhookWrite, object]:
        raise AssertionError("no spool to drain")

    writer = GroupCommitWriter(engine, Spool(tmp_path / "spool"), no_replan, lambda _: None)
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

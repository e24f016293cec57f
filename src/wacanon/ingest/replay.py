"""Journaled webhooks through the pipeline again: after a fix (dead letters), a rollout
step, or a rollback's resume.

Safe to repeat: events are deduplicated by their idempotency key, so only what was never
stored (dead letters that now parse, webhooks journaled while canonical events were
disabled or in shadow mode) becomes new events. Read in chunks, each chunk written in its
own transaction, so a long replay holds no lock for long and reports progress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from wacanon.ingest.pipeline import SILENT_OUTCOMES, Pipeline, Plan, Received
from wacanon.store.repository import StoredWebhook, mark_replayed, write_batch

CHUNK = 200


@dataclass(slots=True)
class ReplayTotals:
    webhooks: int = 0
    new: int = 0
    duplicates: int = 0
    failing: int = 0
    not_stored: int = 0  # shadow / disabled / unknown account under today's flags

    def as_dict(self) -> dict[str, int]:
        return {
            "webhooks": self.webhooks,
            "new_events": self.new,
            "duplicates": self.duplicates,
            "failing": self.failing,
            "not_stored": self.not_stored,
        }


def replay(
    engine: sa.Engine,
    pipeline: Pipeline,
    webhooks: Iterable[StoredWebhook],
    progress: Callable[[ReplayTotals], None] | None = None,
) -> ReplayTotals:
    """Plan each webhook with today's flags and write them, a chunk per transaction."""
    totals = ReplayTotals()
    chunk: list[tuple[StoredWebhook, Plan]] = []
    for stored in webhooks:
        received = Received(
            stored.provider,
            stored.body,
            stored.correlation_id,
            stored.received_at,
            stored.signature_valid,
            stored.path_event,
        )
        chunk.append((stored, pipeline.plan(received)))
        if len(chunk) >= CHUNK:
            _commit(engine, pipeline, chunk, totals)
            chunk = []
            if progress is not None:
                progress(totals)
    if chunk:
        _commit(engine, pipeline, chunk, totals)
        if progress is not None:
            progress(totals)
    return totals


def _commit(
    engine: sa.Engine,
    pipeline: Pipeline,
    chunk: list[tuple[StoredWebhook, Plan]],
    totals: ReplayTotals,
) -> None:
    with engine.begin() as connection:
        results = write_batch(connection, [plan.write for _, plan in chunk])
        fixed = [
            stored.dead_letter_id
            for stored, plan in chunk
            if stored.dead_letter_id is not None
            and not plan.result.errors
            and plan.outcome not in SILENT_OUTCOMES  # nothing stored yet: keep the letter
        ]
        mark_replayed(connection, [i for i in fixed if i is not None])
    for (_, plan), result in zip(chunk, results, strict=True):
        pipeline.committed(plan, result)
        totals.new += len(result.new_keys)
        totals.duplicates += len(plan.to_store) - len(result.new_keys)
        totals.failing += 1 if plan.result.errors else 0
        totals.not_stored += 1 if plan.outcome in SILENT_OUTCOMES else 0
    totals.webhooks += len(chunk)

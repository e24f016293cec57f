"""``wacanon replay``: run journaled webhooks through the pipeline again, after a fix or a rollout.

Replaying is safe to repeat: events are deduplicated by their idempotency key, so only
what was never stored (dead letters that now parse, webhooks journaled while canonical
events were disabled or in shadow mode) becomes new events.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
import typer

from wacanon.cli import app, fail
from wacanon.cli.options import ConfigOption, store_at_head
from wacanon.ingest.flag_cache import FlagCache
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import SILENT_OUTCOMES, Pipeline, Plan, Received
from wacanon.store.repository import (
    StoredWebhook,
    journal_since,
    mark_replayed,
    pending_dead_letters,
    write_batch,
)

CHUNK = 200


@app.command("replay")
def replay_command(
    dead_letter: Annotated[
        bool, typer.Option("--dead-letter", help="Replay dead letters not yet replayed.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Replay every webhook journaled since this ISO 8601 time."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Reprocess dead letters or journaled webhooks; prints progress and a summary."""
    if dead_letter == (since is not None):
        raise fail("say what to replay: --dead-letter or --since TIME (one of them)")
    start = _parse_since(since) if since else None
    loaded, engine = store_at_head(config)
    flags = FlagCache(engine, os.environ, loaded.settings.flag_refresh_seconds)
    flags.refresh()
    pipeline = Pipeline(loaded.settings, flags.for_shopper, Metrics())
    totals = {
        "webhooks": 0,
        "new": 0,
        "duplicates": 0,
        "failing": 0,
        "not stored (shadow / disabled / unknown account)": 0,
    }
    with engine.connect() as connection:  # read in chunks, write each chunk in its own transaction
        webhooks: Iterable[StoredWebhook] = (
            journal_since(connection, start)
            if start is not None
            else pending_dead_letters(connection)
        )
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
        if chunk:
            _commit(engine, pipeline, chunk, totals)
    typer.echo(
        f"replayed {totals['webhooks']} webhook(s): {totals['new']} new event(s), "
        f"{totals['duplicates']} duplicate(s), {totals['failing']} still failing",
        err=True,
    )
    silent = totals["not stored (shadow / disabled / unknown account)"]
    if silent:
        typer.echo(
            f"wacanon: {silent} webhook(s) not stored: shadow mode or canonical events are "
            "off for their shopper in this shell's environment and the stored overrides "
            "(`wacanon flags explain --shopper ID`)",
            err=True,
        )


def _commit(
    engine: sa.Engine,
    pipeline: Pipeline,
    chunk: list[tuple[StoredWebhook, Plan]],
    totals: dict[str, int],
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
        totals["new"] += len(result.new_keys)
        totals["duplicates"] += len(plan.to_store) - len(result.new_keys)
        totals["failing"] += 1 if plan.result.errors else 0
        totals["not stored (shadow / disabled / unknown account)"] += (
            1 if plan.outcome in SILENT_OUTCOMES else 0
        )
    totals["webhooks"] += len(chunk)
    typer.echo(f"... {totals['webhooks']} webhook(s) replayed", err=True)


def _parse_since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"--since: not an ISO 8601 time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value

"""``wacanon replay``: run journaled webhooks through the pipeline again, after a fix or a
rollout (:mod:`wacanon.ingest.replay`; safe to repeat)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Annotated

import typer

from wacanon.cli import app, fail
from wacanon.cli.options import ConfigOption, parse_since, store_at_head
from wacanon.ingest.flag_cache import FlagCache
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline
from wacanon.ingest.replay import ReplayTotals, replay
from wacanon.store.repository import StoredWebhook, journal_since, pending_dead_letters


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
    start = parse_since(since) if since else None
    loaded, engine = store_at_head(config)
    flags = FlagCache.for_settings(engine, os.environ, loaded.settings)
    flags.refresh()
    pipeline = Pipeline(loaded.settings, flags.for_shopper, Metrics())
    with engine.connect() as connection:  # read in chunks, each chunk written on its own
        webhooks: Iterable[StoredWebhook] = (
            journal_since(connection, start)
            if start is not None
            else pending_dead_letters(connection)
        )
        totals = replay(engine, pipeline, webhooks, progress=_progress)
    typer.echo(
        f"replayed {totals.webhooks} webhook(s): {totals.new} new event(s), "
        f"{totals.duplicates} duplicate(s), {totals.failing} still failing",
        err=True,
    )
    if totals.not_stored:
        typer.echo(
            f"wacanon: {totals.not_stored} webhook(s) not stored: shadow mode or canonical "
            "events are off for their shopper in this shell's environment and the stored "
            "overrides (`wacanon flags explain --shopper ID`)",
            err=True,
        )


def _progress(totals: ReplayTotals) -> None:
    typer.echo(f"... {totals.webhooks} webhook(s) replayed", err=True)

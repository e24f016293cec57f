"""``wacanon compare``: which raw fields of webhooks the canonical events derive from.

For one payload file, or for what the journal holds since a moment: each raw field by
JSON path, mapped or not (:mod:`wacanon.rollout.compare`), the events produced, and —
over many webhooks — which unmapped fields occur most, per provider: the list of what
the normalizers still ignore. Exits 0 whatever is unmapped (2: it could not run).
"""

from __future__ import annotations

from typing import Annotated

import typer

from wacanon.cli import app, fail
from wacanon.cli.normalize import read_input
from wacanon.cli.options import ConfigOption, JsonOption, parse_since, print_json, store_at_head
from wacanon.providers.registry import PROVIDERS
from wacanon.rollout.compare import Aggregate, Comparison, compare
from wacanon.store.repository import journal_since


@app.command("compare")
def compare_command(
    source: Annotated[
        str | None, typer.Argument(metavar="[FILE|-]", help="A payload file (- for stdin).")
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option("--provider", "-p", help=f"One of: {', '.join(PROVIDERS)}."),
    ] = None,
    from_journal: Annotated[
        bool, typer.Option("--from-journal", help="Compare journaled webhooks instead.")
    ] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="With --from-journal: from this ISO 8601 time.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="With --from-journal: at most this many.")
    ] = 1000,
    top: Annotated[int, typer.Option("--top", min=1, help="Unmapped fields listed.")] = 20,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Raw fields mapped and unmapped (by JSON path), and the events produced."""
    if provider is not None and provider not in PROVIDERS:
        raise fail(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    if from_journal == (source is not None):
        raise fail("say what to compare: a FILE with --provider, or --from-journal --since TIME")
    if not from_journal:
        if provider is None:
            raise fail("--provider is needed with a FILE")
        comparison = compare(provider, read_input(source or "-"))
        _one(comparison, json_output)
        return
    if since is None:
        raise fail("--from-journal needs --since TIME")
    start = parse_since(since)
    _, engine = store_at_head(config)
    aggregate = Aggregate()
    compared: list[Comparison] = []
    with engine.connect() as connection:
        for stored in journal_since(connection, start):
            if provider is not None and stored.provider != provider:
                continue
            comparison = compare(stored.provider, stored.body)
            aggregate.add(comparison)
            compared.append(comparison)
            if len(compared) % 100 == 0:
                typer.echo(f"... {len(compared)} webhook(s) compared", err=True)
            if len(compared) >= limit:
                break
    if json_output:
        print_json(
            {
                "webhooks": len(compared),
                "providers": {
                    p: {
                        "webhooks": aggregate.webhooks[p],
                        "unmapped": [
                            {"path": path, "webhooks": n} for path, n in aggregate.top(p, top)
                        ],
                    }
                    for p in aggregate.providers()
                },
            }
        )
        return
    _aggregate(aggregate, len(compared), top)


def _one(comparison: Comparison, json_output: bool) -> None:
    if json_output:
        print_json(
            {
                "provider": comparison.provider,
                "events": [{"event_id": i, "event_type": t} for i, t in comparison.events],
                "errors": comparison.errors,
                "mapped": comparison.mapped,
                "unmapped": comparison.unmapped,
                "not_examined": comparison.not_examined,
            }
        )
        return
    typer.echo(f"{comparison.provider}: {len(comparison.events)} event(s)")
    for event_id, event_type in comparison.events:
        typer.echo(f"  {event_type}  {event_id}")
    for error in comparison.errors:
        typer.echo(f"  error: {error}")
    rows = [("mapped", p) for p in comparison.mapped] + [
        ("UNMAPPED", p) for p in comparison.unmapped
    ]
    if rows:
        typer.echo("raw fields (by JSON path):")
    for word, path in rows:
        typer.echo(f"  {word:<8}  {path}")
    more = f", {comparison.not_examined} not examined" if comparison.not_examined else ""
    typer.echo(f"{len(comparison.mapped)} mapped, {len(comparison.unmapped)} unmapped{more}")


def _aggregate(aggregate: Aggregate, total: int, top: int) -> None:
    typer.echo(f"compared {total} journaled webhook(s)")
    if not total:
        return
    typer.echo("unmapped fields that occur most, per provider (in how many webhooks):")
    for provider in aggregate.providers():
        count = aggregate.webhooks[provider]
        typer.echo(f"{provider} ({count} webhook(s))")
        listed = aggregate.top(provider, top)
        if not listed:
            typer.echo("  every field is mapped")
        for path, n in listed:
            typer.echo(f"  {n:>6}  {n / count:>4.0%}  {path}")

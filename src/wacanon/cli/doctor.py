"""``wacanon doctor``: the seed's troubleshooting checks, each finding with its fix
(:mod:`wacanon.doctor`). Exit 0 with no finding, 1 with findings, 2 when it could not
check (configuration invalid, database or server unreachable)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from wacanon.cli import app, fail
from wacanon.cli.options import (
    ConfigOption,
    JsonOption,
    load_or_fail,
    missing_sqlite_file,
    print_json,
)
from wacanon.doctor.findings import AREAS, FOUND, OK, SKIP, Diagnosis
from wacanon.doctor.live import live_checks
from wacanon.doctor.store import refused_connections, spool_checks, store_checks
from wacanon.errors import CouldNotCheck, StoreError
from wacanon.ingest.window import LIVE_SECONDS, Counts, summarize
from wacanon.store import node_windows
from wacanon.store.database import bounded_lock_waits, create_engine, first_line

MARKS = {OK: "✓", FOUND: "✗", SKIP: "–"}


@app.command("doctor")
def doctor_command(
    url: Annotated[
        str | None,
        typer.Option("--url", help="Also check this running server (e.g. http://127.0.0.1:8000)."),
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The seed's troubleshooting checks, each finding with the command that fixes it.

    Duplicates, latency, normalization errors, conversations not created."""
    loaded = load_or_fail(config, writes=False)  # a doctor creates nothing
    missing = missing_sqlite_file(loaded.settings.database_url)
    if missing is not None:  # a doctor creates nothing
        raise fail(
            f"could not check: no database at {missing} "
            "(`wacanon serve` creates it; `wacanon db upgrade` too)"
        )
    engine = bounded_lock_waits(
        create_engine(loaded.settings.database_url), loaded.settings.writer_lock_timeout_seconds
    )
    where = engine.url.render_as_string(hide_password=True)
    problem: str | None = None
    if not json_output:
        typer.echo(f"checking {where}" + (f" and {url}" if url else "") + " …", err=True)
    try:
        found = store_checks(loaded.settings, engine, os.environ)
    except (StoreError, sa.exc.SQLAlchemyError) as exc:
        first = first_line(exc)
        problem = f"the database: {first}"
        # What needs no database still tells something: the spool, the server.
        found = refused_connections(first) + spool_checks(loaded.settings)
    if url:
        try:
            found += live_checks(url.rstrip("/"), _every_node(engine))
        except CouldNotCheck as exc:
            problem = problem or str(exc)
    engine.dispose()
    findings = [d for d in found if d.status == FOUND]
    if json_output:
        print_json(
            {
                "database": where,
                "url": url,
                "ok": not findings and problem is None,
                "could_not_check": problem,
                "checks": [d.as_dict() for d in found],
            }
        )
    else:
        _print(found, url)
    if problem is not None:
        raise fail(f"could not check: {problem}")
    if findings:
        raise typer.Exit(1)


def _every_node(engine: sa.Engine) -> dict[str, Any] | None:
    """Every node's live window added up, from the database; None without one."""
    try:
        with engine.connect() as connection:
            windows = node_windows.fresh(connection, datetime.now(UTC))
    except sa.exc.SQLAlchemyError:
        return None
    if not windows:
        return None
    total = Counts()
    for window in windows:
        total.add(Counts.of(window.counts))
    return summarize(total, LIVE_SECONDS)


def _print(found: list[Diagnosis], url: str | None) -> None:
    for area, title in AREAS.items():
        mine = [d for d in found if d.area == area]
        if not mine:
            continue
        typer.echo(title)
        for d in mine:
            typer.echo(f"  {MARKS[d.status]} {d.name}: {d.measured}")
            if d.fix:
                typer.echo(f"      fix: {d.fix}")
    if not found:
        return
    counts = {status: sum(d.status == status for d in found) for status in MARKS}
    summary = (
        f"{counts[FOUND]} finding(s), {counts[OK]} ✓, {counts[SKIP]} not checked"
        if counts[FOUND]
        else f"no finding: {counts[OK]} ✓, {counts[SKIP]} not checked"
    )
    if url is None:
        summary += " (--url http://HOST:PORT adds the running server's checks)"
    typer.echo(summary)

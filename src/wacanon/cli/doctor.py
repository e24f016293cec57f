"""``wacanon doctor``: the seed's troubleshooting checks, each finding with its fix
(:mod:`wacanon.doctor`). Exit 0 with no finding, 1 with findings, 2 when it could not
check (configuration invalid, database or server unreachable)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from wacanon.cli import app, fail
from wacanon.cli.options import ConfigOption, JsonOption, load_or_fail, print_json
from wacanon.doctor.findings import AREAS, FOUND, OK, SKIP, CouldNotCheck, Diagnosis
from wacanon.doctor.live import live_checks
from wacanon.doctor.store import store_checks
from wacanon.errors import StoreError
from wacanon.store.database import create_engine

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
    """Duplicates, latency, normalization errors, conversations not created: each finding
    with the command that fixes it."""
    loaded = load_or_fail(config)
    database = sa.engine.make_url(loaded.settings.database_url).database
    sqlite_file = loaded.settings.database_url.startswith("sqlite") and database not in (
        None,
        "",
        ":memory:",
    )
    if sqlite_file and not Path(str(database)).exists():  # a doctor creates nothing
        raise fail(
            f"could not check: no database at {database} "
            "(`wacanon serve` creates it; `wacanon db upgrade` too)"
        )
    engine = create_engine(loaded.settings.database_url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        if not json_output:
            typer.echo(f"checking {where}" + (f" and {url}" if url else "") + " …", err=True)
        found = store_checks(loaded.settings, engine, os.environ)
        if url:
            found += live_checks(url.rstrip("/"))
    except (CouldNotCheck, StoreError) as exc:
        raise fail(f"could not check: {exc}") from None
    except sa.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise fail(f"could not check: the database failed: {first}") from None
    finally:
        engine.dispose()
    findings = [d for d in found if d.status == FOUND]
    if json_output:
        print_json(
            {
                "database": where,
                "url": url,
                "ok": not findings,
                "checks": [d.as_dict() for d in found],
            }
        )
    else:
        _print(found, url)
    if findings:
        raise typer.Exit(1)


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
    counts = {status: sum(d.status == status for d in found) for status in MARKS}
    summary = (
        f"{counts[FOUND]} finding(s), {counts[OK]} ✓, {counts[SKIP]} not checked"
        if counts[FOUND]
        else f"no finding: {counts[OK]} ✓, {counts[SKIP]} not checked"
    )
    if url is None:
        summary += " (--url http://HOST:PORT adds the running server's checks)"
    typer.echo(summary)

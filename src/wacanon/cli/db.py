"""``wacanon db upgrade`` / ``wacanon db status``: migrations and what the store holds."""

from __future__ import annotations

import typer

from wacanon.cli import app, fail
from wacanon.cli.options import ConfigOption, load_or_fail, missing_sqlite_file
from wacanon.errors import StoreError
from wacanon.store.database import create_engine, schema_state, upgrade
from wacanon.store.repository import counts

db_app = typer.Typer(help="Database migrations and status.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade_command(config: ConfigOption = None) -> None:
    """Apply every migration up to head."""
    loaded = load_or_fail(config)
    engine = create_engine(loaded.settings.database_url)
    try:
        before = schema_state(engine)
        upgrade(engine)
    except StoreError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"database at head ({before.head}); was at {before.current or 'nothing'}")


@db_app.command("status")
def status_command(config: ConfigOption = None) -> None:
    """Schema revision and row counts."""
    loaded = load_or_fail(config, writes=False)
    missing = missing_sqlite_file(loaded.settings.database_url)
    if missing is not None:  # connecting would create it empty: a status writes nothing
        typer.echo(f"schema: nothing (no database at {missing} yet: `wacanon serve` creates it)")
        return
    engine = create_engine(loaded.settings.database_url)
    try:
        state = schema_state(engine)
    except StoreError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"schema: {state.current or 'nothing'} (head {state.head})")
    if state.at_head:
        with engine.connect() as connection:
            for table, number in counts(connection).items():
                typer.echo(f"{table}: {number}")

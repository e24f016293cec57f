"""What several commands share: the --config option, loading it, and the store it names."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
import typer

from wacanon.cli import fail
from wacanon.config import DEFAULT_CONFIG_NAME, LoadedConfig, Settings, load
from wacanon.errors import ConfigError, StoreError
from wacanon.ingest.flag_cache import FlagCache
from wacanon.ingest.projector import Router
from wacanon.store.database import create_engine, schema_state

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help=f"Config file (default: $WACANON_CONFIG or ./{DEFAULT_CONFIG_NAME})."
    ),
]


def load_or_fail(config: Path | None, *, writes: bool = True) -> LoadedConfig:
    try:
        return load(config, writes=writes)
    except ConfigError as exc:
        raise fail(f"invalid configuration: {exc}") from None


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet, or None. Connecting
    would create it empty: commands that only read or adjust a store must not."""
    database = sa.engine.make_url(url).database
    if not url.startswith("sqlite") or database in (None, "", ":memory:"):
        return None
    return None if Path(str(database)).exists() else str(database)


def store_at_head(config: Path | None) -> tuple[LoadedConfig, sa.Engine]:
    """The configured database, refusing one whose schema is not at head — and one that
    does not exist yet, without creating it (nor a first trial's token files)."""
    loaded = load_or_fail(config, writes=False)
    missing = missing_sqlite_file(loaded.settings.database_url)
    if missing is not None:
        raise fail(
            f"no database at {missing} yet: `wacanon serve` creates it (`wacanon db upgrade` too)"
        )
    engine = create_engine(loaded.settings.database_url)
    try:
        state = schema_state(engine)
    except StoreError as exc:
        raise fail(str(exc)) from None
    if state.problem is not None:
        raise fail(state.problem)
    return loaded, engine


JsonOption = Annotated[bool, typer.Option("--json", help="JSON for scripts.")]


def router_for(settings: Settings, engine: sa.Engine) -> Router:
    """Routing's database work as a server would do it, with this environment's flags."""
    flags = FlagCache.for_settings(engine, os.environ, settings)
    flags.refresh()
    return Router(engine, settings, flags.for_shopper)


def to_second(when: str | None) -> str:
    """A time for a table column: to the second (``2026-03-01T09:00:00Z``)."""
    if not when:
        return "–"
    return when.split(".", 1)[0].removesuffix("Z") + "Z"


def print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def parse_since(text: str) -> datetime:
    """``--since``: an ISO 8601 time (``Z`` allowed; a naive one is UTC)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"--since: not an ISO 8601 time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value

"""What several commands share: the --config option, loading it, and the store it names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from wacanon.cli import fail
from wacanon.config import DEFAULT_CONFIG_NAME, LoadedConfig, load
from wacanon.errors import ConfigError, StoreError
from wacanon.store.database import create_engine, schema_state

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help=f"Config file (default: $WACANON_CONFIG or ./{DEFAULT_CONFIG_NAME})."
    ),
]


def load_or_fail(config: Path | None) -> LoadedConfig:
    try:
        return load(config)
    except ConfigError as exc:
        raise fail(f"invalid configuration: {exc}") from None


def store_at_head(config: Path | None) -> tuple[LoadedConfig, sa.Engine]:
    """The configured database, refusing one whose schema is not at head."""
    loaded = load_or_fail(config)
    engine = create_engine(loaded.settings.database_url)
    try:
        state = schema_state(engine)
    except StoreError as exc:
        raise fail(str(exc)) from None
    if state.problem is not None:
        raise fail(state.problem)
    return loaded, engine

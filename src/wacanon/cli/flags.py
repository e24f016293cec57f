"""``wacanon flags``: runtime overrides a running server picks up within seconds.

An override for one shopper beats a global one, which beats the environment. ``explain``
evaluates with this shell's environment plus the stored overrides: run it with the
server's environment to see exactly what the server does.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from wacanon.cli import app, fail
from wacanon.cli.options import ConfigOption, store_at_head
from wacanon.errors import ConfigError
from wacanon.flags import GLOBAL, FlagSnapshot, validate
from wacanon.store.repository import flag_override_rows, flag_overrides_map, set_flag, unset_flag

flags_app = typer.Typer(help="Rollout flags: set, unset, list, explain.", no_args_is_help=True)
app.add_typer(flags_app, name="flags")

ShopperOption = Annotated[
    str | None, typer.Option("--shopper", help="Only for this shopper (default: every shopper).")
]


@flags_app.command("set")
def set_command(
    name: Annotated[str, typer.Argument(help="e.g. WHATSAPP_CANONICAL_SHADOW_MODE")],
    value: Annotated[str, typer.Argument(help="true/false, a policy name, a list or a percent")],
    shopper: ShopperOption = None,
    config: ConfigOption = None,
) -> None:
    """Store an override; running servers obey it within 5 seconds."""
    try:
        normalized = validate(name, value)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _, engine = store_at_head(config)
    with engine.begin() as connection:
        set_flag(connection, shopper or GLOBAL, name, normalized)
    scope = f"shopper {shopper}" if shopper else "every shopper"
    typer.echo(f"{name} = {normalized} for {scope}")


@flags_app.command("unset")
def unset_command(name: str, shopper: ShopperOption = None, config: ConfigOption = None) -> None:
    """Remove an override (the environment's value applies again)."""
    _, engine = store_at_head(config)
    with engine.begin() as connection:
        removed = unset_flag(connection, shopper or GLOBAL, name)
    typer.echo(f"removed {name} override" if removed else f"no {name} override to remove")


@flags_app.command("list")
def list_command(config: ConfigOption = None) -> None:
    """Every stored override."""
    _, engine = store_at_head(config)
    with engine.connect() as connection:
        rows = flag_override_rows(connection)
    if not rows:
        typer.echo("no overrides (environment and defaults apply)")
    for row in rows:
        scope = "every shopper" if row.shopper_id == GLOBAL else f"shopper {row.shopper_id}"
        typer.echo(f"{row.name} = {row.value} for {scope} (set {row.updated_at:%Y-%m-%d %H:%M:%S})")


@flags_app.command("explain")
def explain_command(
    shopper: Annotated[str, typer.Option("--shopper", help="The shopper to explain.")],
    config: ConfigOption = None,
) -> None:
    """Each flag's effective value for a shopper, and why."""
    _, engine = store_at_head(config)
    with engine.connect() as connection:
        snapshot = FlagSnapshot(env=dict(os.environ), overrides=flag_overrides_map(connection))
    try:
        values = snapshot.explain(shopper)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    for flag in values:
        value = str(flag.value).lower() if isinstance(flag.value, bool) else flag.value
        typer.echo(f"{flag.name} = {value}  ({flag.reason})")

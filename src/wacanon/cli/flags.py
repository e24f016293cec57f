"""``wacanon flags``: runtime overrides a running server picks up within seconds.

An override for one shopper beats a global one, which beats the environment. ``list``
and ``explain`` evaluate with this shell's environment plus the stored overrides: run
them with the server's environment to see exactly what the server does. Without
``--shopper`` they cover every known shopper: those the configuration names (accounts,
``default_shopper_id``; in a first trial shop-1 to shop-3, ``wacanon simulate``'s) and
those with an override of their own.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from wacanon.cli import app, fail
from wacanon.cli.options import ConfigOption, store_at_head
from wacanon.errors import ConfigError
from wacanon.flags import GLOBAL, FlagSnapshot, FlagValue, known_shoppers, validate
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
    """Store an override; running servers obey it within flag_refresh_seconds (2 s by
    default)."""
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
    scope = f"shopper {shopper}" if shopper else "every shopper"
    if removed:
        typer.echo(f"removed the {name} override for {scope}")
    else:
        where = f"shopper {shopper}" if shopper else "all shoppers (the global one)"
        typer.echo(f"nothing to remove: no {name} override for {where}")


def _word(flag: FlagValue) -> str:
    return str(flag.value).lower() if isinstance(flag.value, bool) else str(flag.value)


def _explain(snapshot: FlagSnapshot, shopper: str | None) -> list[FlagValue]:
    try:
        return snapshot.explain(shopper)
    except ConfigError as exc:
        raise fail(f"invalid flag: {exc}") from None


def _echo_explained(snapshot: FlagSnapshot, shopper: str | None, indent: str = "") -> None:
    """One line per flag: its effective value for ``shopper`` and why."""
    for flag in _explain(snapshot, shopper):
        typer.echo(f"{indent}{flag.name} = {_word(flag)}  ({flag.reason})")


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


@flags_app.command("list")
def list_command(
    overrides: Annotated[
        bool, typer.Option("--overrides", help="The stored override rows instead.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Each known shopper's effective flag values (--overrides: the stored overrides)."""
    loaded, engine = store_at_head(config)
    with engine.connect() as connection:
        rows = flag_override_rows(connection)
    stored = {(row.shopper_id, row.name): row.value for row in rows}
    if overrides:
        if not rows:
            typer.echo("no overrides (environment and defaults apply)")
        for row in rows:
            scope = "every shopper" if row.shopper_id == GLOBAL else f"shopper {row.shopper_id}"
            typer.echo(
                f"{row.name} = {row.value} for {scope} (set {row.updated_at:%Y-%m-%d %H:%M:%S})"
            )
        return
    snapshot = FlagSnapshot(env=dict(os.environ), overrides=stored)
    shoppers = known_shoppers(loaded.settings.known_shoppers, stored)
    if not shoppers:
        _echo_unnarrowed(snapshot)
    else:
        typer.echo("effective values per shopper (flag names without WHATSAPP_):")
        values = {shopper: _explain(snapshot, shopper) for shopper in shoppers}
        names = [flag.name for flag in values[shoppers[0]]]
        table = [["shopper", *(name.removeprefix("WHATSAPP_") for name in names)]]
        table += [[shopper, *(_word(f) for f in values[shopper])] for shopper in shoppers]
        for line in _columns(table):
            typer.echo(line)
    typer.echo(
        f"{len(rows)} stored override(s) (`wacanon flags list --overrides`); "
        "why each value: `wacanon flags explain [--shopper ID]`"
        if rows
        else "no stored overrides; why each value: `wacanon flags explain [--shopper ID]`"
    )


def _echo_unnarrowed(snapshot: FlagSnapshot) -> None:
    """With no shopper configured: the global switches, each explained."""
    typer.echo(
        "no shopper configured (accounts, default_shopper_id): the switches before "
        "per-shopper narrowing (`--shopper ID` for one shopper):"
    )
    _echo_explained(snapshot, None)


@flags_app.command("explain")
def explain_command(
    shopper: Annotated[
        str | None,
        typer.Option("--shopper", help="The shopper to explain (default: every known shopper)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Each flag's effective value for a shopper (or every known shopper), and why."""
    loaded, engine = store_at_head(config)
    with engine.connect() as connection:
        stored = flag_overrides_map(connection)
    snapshot = FlagSnapshot(env=dict(os.environ), overrides=stored)
    if shopper is not None:
        _echo_explained(snapshot, shopper)
        return
    shoppers = known_shoppers(loaded.settings.known_shoppers, stored)
    if not shoppers:
        _echo_unnarrowed(snapshot)
        return
    for index, name in enumerate(shoppers):
        if index:
            typer.echo("")
        typer.echo(f"shopper {name}:")
        _echo_explained(snapshot, name, indent="  ")

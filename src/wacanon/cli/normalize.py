"""``wacanon normalize``: one provider webhook body in, canonical events out."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from wacanon.cli import app, fail
from wacanon.errors import UnknownProviderError
from wacanon.providers.registry import PROVIDERS, normalize


def read_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {source}: {exc.strerror or exc}") from None


def parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"--received-at: not an ISO 8601 time: {text!r}") from None


@app.command("normalize")
def normalize_command(
    provider: Annotated[
        str, typer.Option("--provider", "-p", help=f"One of: {', '.join(PROVIDERS)}.")
    ],
    source: Annotated[
        str, typer.Argument(metavar="[FILE|-]", help="Payload file; - or nothing reads stdin.")
    ] = "-",
    account: Annotated[
        str | None,
        typer.Option(help="Account id to use instead of the one the payload names."),
    ] = None,
    pretty: Annotated[bool, typer.Option("--pretty", help="Indent each event.")] = False,
    received_at: Annotated[
        str | None,
        typer.Option(
            "--received-at",
            help="ISO 8601 time of receipt (default: now), for reproducible output.",
        ),
    ] = None,
) -> None:
    """Print the canonical events of one provider webhook body, one JSON object per line."""
    if provider not in PROVIDERS:
        raise fail(str(UnknownProviderError(provider, tuple(PROVIDERS))))
    when = parse_time(received_at)
    body = read_input(source)
    result = normalize(provider, body, account=account, received_at=when)
    invalid = [e for e in result.errors if e.code == "invalid_json"]
    if invalid:
        raise fail(invalid[0].message)
    out = sys.stdout
    for event in result.events:
        out.write(event.model_dump_json(indent=2 if pretty else None))
        out.write("\n")
    out.flush()
    for error in result.errors:
        typer.echo(f"wacanon: error: {error}", err=True)
    if result.errors:
        raise typer.Exit(1)

"""``wacanon normalize``: one provider webhook body in, canonical events out.

With ``--received-at`` the output is reproducible byte for byte: unless
``--correlation-id`` names one, the correlation id is derived from the input,
``uuid5(NAMESPACE_URL, "wacanon:normalize:<sha256 hex of the body>:<received_at>")``
with ``received_at`` in UTC as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``. Without either, each
run gets a random correlation id, as a received webhook does.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from wacanon.canonical.times import as_utc
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


def derived_correlation_id(body: bytes, received_at: datetime) -> str:
    """The documented, deterministic correlation id of ``--received-at`` runs."""
    stamp = as_utc(received_at).isoformat().replace("+00:00", "Z")
    digest = hashlib.sha256(body).hexdigest()
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wacanon:normalize:{digest}:{stamp}"))


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
    correlation_id: Annotated[
        str | None,
        typer.Option(
            "--correlation-id",
            help="trace.correlation_id of the events (default: derived from the body and "
            "--received-at when it is given, else random).",
        ),
    ] = None,
) -> None:
    """Print the canonical events of one provider webhook body, one JSON object per line."""
    if provider not in PROVIDERS:
        raise fail(str(UnknownProviderError(provider, tuple(PROVIDERS))))
    when = parse_time(received_at)
    body = read_input(source)
    if correlation_id is not None and not correlation_id.strip():
        raise fail("--correlation-id: must not be empty")
    if correlation_id is None and when is not None:
        correlation_id = derived_correlation_id(body, when)
    result = normalize(
        provider, body, account=account, received_at=when, correlation_id=correlation_id
    )
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

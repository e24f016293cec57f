"""The ``wacanon`` command line.

Exit codes are part of the interface: 0 done (also when a payload yields no event),
1 a payload was JSON but parts of it could not be understood (the events that could be
read are still printed), 2 the command could not run at all (bad arguments, unreadable
file, invalid JSON, unknown provider). Errors are single lines on stderr, never tracebacks.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from wacanon.errors import UnknownProviderError
from wacanon.providers.registry import PROVIDERS, normalize
from wacanon.simulate import SimulationOptions, generate

app = typer.Typer(
    name="wacanon",
    help="WhatsApp provider webhooks in, canonical events v1 out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and give the exit to raise."""
    typer.echo(f"wacanon: {message}", err=True)
    return typer.Exit(code)


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


@app.command("simulate")
def simulate_command(
    count: Annotated[int, typer.Option(min=1, help="How many webhook bodies.")] = 100,
    seed: Annotated[int, typer.Option(help="Same seed, same stream.")] = 0,
    shoppers: Annotated[int, typer.Option(min=1, help="How many shoppers (one account each).")] = 3,
    redeliveries: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of bodies that are exact redeliveries.")
    ] = 0.1,
) -> None:
    """Print a realistic simulated webhook stream, one JSON body per line."""
    options = SimulationOptions(
        count=count, seed=seed, shoppers=shoppers, redelivery_rate=redeliveries
    )
    out = sys.stdout.buffer
    for body in generate(options):
        out.write(body)
        out.write(b"\n")
    out.flush()


def main() -> None:
    """Console entry point: a broken pipe or an internal bug is one line, not a traceback."""
    try:
        app()
    except BrokenPipeError:  # `wacanon simulate | head`: the reader left, nothing is wrong
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - a bug of ours: one line and EX_SOFTWARE, no traceback
        typer.echo(f"wacanon: internal error ({type(exc).__name__}): {exc}", err=True)
        sys.exit(70)

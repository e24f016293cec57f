"""The ``wacanon`` command line.

Exit codes are part of the interface: 0 done (also when a payload yields no event),
1 a payload was JSON but parts of it could not be understood (the events that could be
read are still printed), 2 the command could not run at all (bad arguments, unreadable
file, invalid JSON, unknown provider, invalid configuration). Errors are single lines on
stderr, never tracebacks.

Commands print only what a person reads: library loggers stay at WARNING, one readable
line each (``wacanon serve`` switches to its JSON logs when it starts the service).
"""

from __future__ import annotations

import sys

import typer

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


from wacanon.cli import (  # noqa: E402,F401 - registers commands
    compare,
    conversations,
    db,
    doctor,
    flags,
    normalize,
    replay,
    rollout,
    serve,
    simulate,
    skm,
)


def main() -> None:
    """Console entry point: a broken pipe or an internal bug is one line, not a traceback."""
    from wacanon import logging as wlogging

    wlogging.configure_cli()  # warnings only, readable; `serve` switches to JSON logs
    try:
        app()
    except BrokenPipeError:  # `wacanon simulate | head`: the reader left, nothing is wrong
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - a bug of ours: one line and EX_SOFTWARE, no traceback
        typer.echo(f"wacanon: internal error ({type(exc).__name__}): {exc}", err=True)
        sys.exit(70)

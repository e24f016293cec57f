"""``wacanon simulate``: print (or POST) a realistic simulated webhook stream."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from wacanon.cli import app, fail
from wacanon.cli.options import load_or_fail
from wacanon.config import TRIAL_TOKEN_FILE, saved_trial_token
from wacanon.simulate import SimulationOptions, expected_conversations, generate


@app.command("simulate")
def simulate_command(
    count: Annotated[int, typer.Option(min=1, help="How many webhook bodies.")] = 100,
    seed: Annotated[int, typer.Option(help="Same seed, same stream.")] = 0,
    shoppers: Annotated[int, typer.Option(min=1, help="How many shoppers (one account each).")] = 3,
    redeliveries: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of bodies that are exact redeliveries.")
    ] = 0.1,
    post: Annotated[
        str | None,
        typer.Option(
            "--post", help="POST them to this wacanon server (e.g. http://127.0.0.1:8000)."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token (default: $WACANON_SIMULATED_TOKEN, else the "
            "\\[providers.simulated] token of ./wacanon.toml or $WACANON_CONFIG, else "
            "./.wacanon-dev-token in a first trial)."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Parallel requests with --post.")] = 8,
    skm_number: Annotated[
        list[str] | None,
        typer.Option(
            "--skm-number",
            help="A sales agent's number (a wa_ids entry of \\[\\[skms]]; repeat for several): "
            "about a third of group messages are theirs.",
        ),
    ] = None,
) -> None:
    """Print a realistic simulated webhook stream, one JSON body per line — or POST it."""
    digits = [("".join(ch for ch in n if ch.isdigit()), n) for n in skm_number or []]
    for found, given in digits:
        if not 8 <= len(found) <= 15:
            raise fail(f"--skm-number {given!r} is not a WhatsApp number (8 to 15 digits)")
    options = SimulationOptions(
        count=count,
        seed=seed,
        shoppers=shoppers,
        redelivery_rate=redeliveries,
        skm_numbers=tuple(found for found, _ in digits),
    )
    if post is not None:
        _post(post, options, token, concurrency)
        return
    out = sys.stdout.buffer
    for body in generate(options):
        out.write(body)
        out.write(b"\n")
    out.flush()
    typer.echo(_expectation(options), err=True)


def _expectation(options: SimulationOptions) -> str:
    """What routing must make of this stream: the newcomer's self-check."""
    counts = ", ".join(f"{s} {n}" for s, n in sorted(expected_conversations(options).items()))
    return (
        f"conversations this stream must give, with routing on: {counts} "
        "(check: wacanon conversations list --shopper S)"
    )


def _configured_token() -> str | None:
    """The simulated provider's token in the configuration a ``wacanon serve`` started
    here would read (``./wacanon.toml`` or ``$WACANON_CONFIG``) — in a first trial, the
    token it saved. A ``wacanon.toml`` written after a first trial makes the saved token
    stale: it was sent, and refused, although the file named the right one."""
    loaded = load_or_fail(None, writes=False)
    if loaded.first_trial:
        return saved_trial_token()
    return loaded.settings.providers.simulated.token


def _post(base: str, options: SimulationOptions, token: str | None, concurrency: int) -> None:
    import asyncio
    import os

    from wacanon.load import post_all

    if not base.startswith(("http://", "https://")):
        raise fail(f"--post {base!r}: give the server's URL, e.g. http://127.0.0.1:8000")
    token = token or os.environ.get("WACANON_SIMULATED_TOKEN") or _configured_token()
    if not token:
        raise fail(
            "no token: pass --token (the [providers.simulated] token), set "
            f"WACANON_SIMULATED_TOKEN, or run where `wacanon serve` saved {TRIAL_TOKEN_FILE}"
        )
    url = base.rstrip("/") + "/webhooks/simulated"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def progress(report: object) -> None:
        typer.echo(f"... {getattr(report, 'sent', 0)} posted", err=True)

    report = asyncio.run(
        post_all(
            url, generate(options), headers=headers, concurrency=concurrency, progress=progress
        )
    )
    if report.statuses and set(report.statuses) == {0}:  # not one answer: no figures
        raise fail(f"could not reach {url}: {report.failures[0]}", code=1)
    typer.echo(report.summary())
    typer.echo(_expectation(options))
    for failure in report.failures[:5]:
        typer.echo(f"wacanon: {failure}", err=True)
    if any(code != 200 for code in report.statuses):
        raise typer.Exit(1)

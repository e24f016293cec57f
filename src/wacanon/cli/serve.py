"""``wacanon serve`` and ``wacanon init``: run the webhook service, write an example config."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from wacanon import __version__
from wacanon.cli import app, fail
from wacanon.cli.options import ConfigOption, load_or_fail
from wacanon.config import DEFAULT_CONFIG_NAME, EXAMPLE, LoadedConfig, Settings
from wacanon.errors import ConfigError, DatabaseUnreachable, StoreError
from wacanon.flags import FlagSnapshot, all_names
from wacanon.providers.registry import PROVIDERS
from wacanon.store.database import create_engine, ensure_schema
from wacanon.store.repository import flag_overrides_map


def check_flags_env() -> None:
    """Refuse to start on a malformed flag value rather than guess."""
    snapshot = FlagSnapshot(env=dict(os.environ), overrides={})
    try:
        snapshot.explain("probe-shopper")
    except ConfigError as exc:
        raise fail(f"invalid flag: {exc}") from None
    unknown = [k for k in os.environ if k.startswith("WHATSAPP_") and k not in all_names()]
    for name in unknown:
        typer.echo(f"wacanon: warning: {name} is not a wacanon flag (ignored)", err=True)


def startup_lines(
    loaded: LoadedConfig,
    schema_note: str,
    host: str,
    port: int,
    workers: int,
    overrides: Mapping[tuple[str, str], str] | None = None,
) -> list[str]:
    """What ``serve`` prints before it starts; flags as every shopper gets them unless
    narrowed, stored overrides included (``overrides`` None: the database did not answer)."""
    settings = loaded.settings
    lines = [f"wacanon {__version__} listening on http://{host}:{port} ({workers} worker(s))"]
    lines.append(f"config: {loaded.source}" if loaded.source else "config: none")
    lines += [f"  {note}" for note in loaded.notes]
    lines.append(f"database: {_safe_url(settings)} ({schema_note})")
    for provider in PROVIDERS:
        secret = settings.providers.secret_of(provider)
        unsigned = settings.providers.allows_unsigned(provider)
        if secret:
            state = "verifying"
        elif unsigned:
            state = "ACCEPTING UNSIGNED WEBHOOKS (allow_unsigned = true): local trials only"
        else:
            state = "refusing (no secret configured)"
        lines.append(f"provider {provider}: {state}")
    tokens = settings.api_tokens
    if not tokens:
        lines.append("read API /v1 and console /console: refusing (no [[api_tokens]] configured)")
    elif not loaded.first_trial:
        every = sum(1 for t in tokens if t.shopper_id == "*")
        lines.append(
            f"read API /v1 and console /console: {len(tokens)} token(s), "
            f"{every} for every shopper ([[api_tokens]])"
        )
    snapshot = FlagSnapshot(env=dict(os.environ), overrides=dict(overrides or {}))
    if overrides is None:
        lines.append(
            "flags: stored overrides unknown (database unreachable); from the environment:"
        )
    for value in snapshot.explain(None):
        lines.append(f"flag {value.name} = {str(value.value).lower()} ({value.reason})")
    lines.append(
        "flags are narrowed per shopper and overridden at runtime: "
        "`wacanon flags explain --shopper ID`"
    )
    return lines


def _safe_url(settings: Settings) -> str:
    return sa.engine.make_url(settings.database_url).render_as_string(hide_password=True)


@app.command("serve")
def serve_command(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (use 1 with SQLite).")] = 1,
) -> None:
    """Receive provider webhooks over HTTP, verify, normalize and store them."""
    import uvicorn

    from wacanon import logging as wlogging
    from wacanon.api.limits import uvicorn_options

    loaded = load_or_fail(config)
    if workers > 1 and loaded.settings.database_url.startswith("sqlite"):
        raise fail(
            "SQLite has one writer: run --workers 1 (one worker already group-commits "
            "concurrent webhooks), or use PostgreSQL for several workers"
        )
    check_flags_env()
    engine = create_engine(loaded.settings.database_url)
    overrides: dict[tuple[str, str], str] | None = None
    try:
        schema_note = ensure_schema(engine)
        with engine.connect() as connection:
            overrides = flag_overrides_map(connection)
    except DatabaseUnreachable as exc:
        schema_note = f"UNREACHABLE: {exc}; webhooks are spooled until it answers"
    except StoreError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    problem = cannot_listen(host, port)
    if problem is not None:
        raise fail(problem)
    for line in startup_lines(loaded, schema_note, host, port, workers, overrides):
        typer.echo(line, err=True)
    if config is not None:
        os.environ["WACANON_CONFIG"] = str(config.resolve())
    if loaded.first_trial and loaded.settings.providers.simulated.token:
        os.environ["WACANON_SIMULATED_TOKEN"] = loaded.settings.providers.simulated.token
    if workers > 1:
        _multiprocess_metrics()
    wlogging.configure(loaded.settings.log_level)
    uvicorn.run(
        "wacanon.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        # Header timeout and size, connection cap, keep-alive timeout (docs: "Limits").
        **uvicorn_options(loaded.settings),
    )


def cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (taken, not an address of this machine), or
    None — found before the start-up lines say "listening", where uvicorn would say it
    after them, in its own words. A port taken a moment later still fails in uvicorn."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror} (--host)"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            hint = " (another server? choose a port with --port)" if taken else ""
            return f"cannot listen on {host}:{port}: {exc.strerror}{hint}"
    return None


def _multiprocess_metrics() -> None:
    """Every worker's metrics in one ``/metrics`` (prometheus-client's multiprocess mode):
    a fresh directory of the workers' value files, set before they start."""
    import tempfile

    from wacanon.api.exposition import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:  # the operator's: emptied, as prometheus-client asks at each start
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="wacanon-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)


@app.command("init")
def init_command(
    path: Annotated[Path, typer.Argument(help="Where to write it.")] = Path(DEFAULT_CONFIG_NAME),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example configuration."""
    if path.exists() and not force:
        raise fail(f"{path} exists; use --force to overwrite")
    path.write_text(EXAMPLE, encoding="utf-8")
    typer.echo(f"wrote {path}; edit it, then run: wacanon serve --config {path}", err=True)

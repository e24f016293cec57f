"""Logging: JSON lines for the service, plain warnings for the other commands.

``wacanon serve`` (and its workers) log structlog JSON lines on stderr at the configured
level, with the correlation id bound on every line of a request (:func:`configure`).
Every other command prints only what a person reads: the library loggers (httpx,
httpcore, wacanon's own modules) are kept at WARNING and rendered as one
``wacanon: warning: …`` line (:func:`configure_cli`, what the console entry point sets
before any command runs; ``serve`` switches to :func:`configure` before it starts).

Privacy rule (LGPD): INFO lines carry ids, counts, outcomes and body hashes only; phone
numbers, names and message texts appear at DEBUG at most.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog


def configure(level: str = "INFO") -> None:
    """The service's logs: JSON lines on stderr at ``level``."""
    _configure(
        level,
        [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o).decode()),
        ],
    )


def configure_cli() -> None:
    """A command a person runs: only warnings and errors, one readable line each."""
    _configure("WARNING", [structlog.processors.format_exc_info, _human])


def _human(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    level = event_dict.pop("level", "warning")
    event = event_dict.pop("event", "")
    details = ", ".join(f"{key}={value}" for key, value in event_dict.items())
    return f"wacanon: {level}: {event}" + (f" ({details})" if details else "")


def _configure(level: str, renderers: list[Any]) -> None:
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=numeric, force=True)
    for noisy in ("uvicorn.access", "alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Through stdlib logging (one handler on stderr), not cached: reconfiguring
        # (tests, an embedding application) takes effect for loggers already in use.
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )

"""structlog as JSON lines, with the correlation id bound on every line of a request.

Privacy rule (LGPD): INFO lines carry ids, counts, outcomes and body hashes only; phone
numbers, names and message texts appear at DEBUG at most.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


def configure(level: str = "INFO") -> None:
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=numeric, force=True)
    for noisy in ("uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o).decode()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Through stdlib logging (one handler on stderr), not cached: reconfiguring
        # (tests, an embedding application) takes effect for loggers already in use.
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )

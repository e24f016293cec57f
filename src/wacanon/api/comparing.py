"""Phase 1's comparative logs: a sample of webhooks compared with the events they gave.

With ``WACANON_COMPARATIVE_LOGS`` on for a webhook's shopper, a share
(``comparative_logs_sample_rate``, 1 % by default) of its webhooks is compared
(:mod:`wacanon.rollout.compare`) after the reply, in a worker thread — the comparison
normalizes the body twice per leaf — and logged as one ``comparison`` line: paths, event
ids and types at INFO; the events' values and the unmapped leaves' values only at DEBUG
(no personal data at INFO). Bodies over 64 KiB are not compared (logged as skipped).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import orjson
import structlog

from wacanon.flags import ShopperFlags
from wacanon.ingest.pipeline import Plan
from wacanon.rollout.compare import compare

log = structlog.get_logger("wacanon.compare")

MAX_COMPARED_BYTES = 64 * 1024


def maybe_compare(
    plan: Plan, flags_for: Callable[[str | None], ShopperFlags], sample_rate: float
) -> None:
    """Schedule the comparison of this webhook if its shopper compares and it is sampled."""
    shoppers = {e.routing.shopper_id for e in plan.result.events}
    if not any(flags_for(s).comparative_logs for s in shoppers if s is not None):
        return
    if random.random() >= sample_rate:
        return
    received = plan.received
    if len(received.body) > MAX_COMPARED_BYTES:
        log.info(
            "comparison skipped: body too large",
            correlation_id=received.correlation_id,
            bytes=len(received.body),
        )
        return
    loop = asyncio.get_running_loop()
    loop.run_in_executor(
        None, _compare_and_log, received.provider, received.body, received.correlation_id
    )


def _compare_and_log(provider: str, body: bytes, correlation_id: str) -> None:
    try:
        comparison = compare(provider, body)
    except Exception:
        log.exception("comparison failed", correlation_id=correlation_id)
        return
    log.info("comparison", correlation_id=correlation_id, **comparison.as_log())
    log.debug("comparison values", correlation_id=correlation_id, body=orjson.loads(body))

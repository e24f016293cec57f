"""``/health`` (process up), ``/ready`` (database reachable, schema at head), ``/metrics``
and ``/metrics/window`` (the last hour in this process, for ``wacanon rollout check``)."""

from __future__ import annotations

import structlog
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from wacanon.api.deps import ServiceDep
from wacanon.api.exposition import exposition
from wacanon.api.replies import reply
from wacanon.ingest.window import KEEP_SECONDS, summarize

router = APIRouter()
log = structlog.get_logger("wacanon.health")


@router.get("/health")
async def health() -> Response:
    return reply(200, {"status": "ok"})


@router.get("/ready")
async def ready(service: ServiceDep) -> Response:
    """Ready or not, and nothing more: what is wrong (hosts, driver errors, paths) goes to
    the log, never to whoever can reach this URL."""
    ok, detail = await service.readiness()
    if ok:
        return reply(200, {"status": "ready"})
    log.warning("not ready", reason=detail)
    return reply(503, {"status": "not ready"})


@router.get("/metrics")
async def metrics(service: ServiceDep) -> Response:
    data = exposition(service.metrics.registry)  # spool depth: kept by housekeeping
    return PlainTextResponse(data, media_type=CONTENT_TYPE_LATEST)


@router.get("/metrics/window")
async def window(service: ServiceDep, seconds: float = 900) -> Response:
    """The last ``seconds`` (at most 3600) of this process's webhooks, probes included:
    rates and p50/p95/p99 for ``wacanon rollout check`` (counts only, like /metrics)."""
    if not 0 < seconds <= 3600:
        return reply(400, {"error": "seconds: expected more than 0 and at most 3600"})
    # ``node`` and the raw ``counts``: a server of several worker processes answers from
    # whichever took the connection; ``rollout check`` adds every worker's up.
    total, probed = service.window.counts(seconds)
    return reply(
        200,
        {
            **summarize(total, min(seconds, KEEP_SECONDS), probed),
            "node": service.node,
            "counts": total.as_dict(),
            "probed": probed,
        },
    )

"""``/health`` (process up), ``/ready`` (database reachable, schema at head), ``/metrics``."""

from __future__ import annotations

import structlog
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from wacanon.api.deps import ServiceDep
from wacanon.api.replies import reply

router = APIRouter()
log = structlog.get_logger("wacanon.health")


@router.get("/health")
async def health() -> Response:
    return reply(200, {"status": "ok"})


@router.get("/ready")
async def ready(service: ServiceDep) -> Response:
    """Ready or not, and nothing more: what is wrong (hosts, driver errors, paths) goes to
    the log, never to whoever can reach this URL."""
    ok, detail = await run_in_threadpool(service.ready)
    if ok:
        return reply(200, {"status": "ready"})
    log.warning("not ready", reason=detail)
    return reply(503, {"status": "not ready"})


@router.get("/metrics")
async def metrics(service: ServiceDep) -> Response:
    data = generate_latest(service.metrics.registry)  # spool depth: kept by housekeeping
    return PlainTextResponse(data, media_type=CONTENT_TYPE_LATEST)

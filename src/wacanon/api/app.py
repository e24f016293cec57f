"""``create_app(settings)``: the application, built from settings, with no globals.

The webhook POST routes sit on a bare Starlette app in front, and everything else
(subscription challenge, health, readiness, metrics) on FastAPI mounted behind it: the
webhook path runs thousands of times a second, and FastAPI's middleware stack and
dependency solving cost more there than the handler's own work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount

from wacanon.api.routes import health, webhooks
from wacanon.api.service import Service
from wacanon.config import Settings


def create_app(settings: Settings, env: Mapping[str, str] | None = None) -> Starlette:
    service = Service.build(settings, env)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    api = FastAPI(title="wacanon", docs_url=None, redoc_url=None)
    api.state.service = service
    api.include_router(webhooks.router)
    api.include_router(health.router)
    app = Starlette(routes=[*webhooks.post_routes, Mount("/", app=api)], lifespan=lifespan)
    app.state.service = service
    return app


def app_from_environment() -> Starlette:
    """uvicorn's factory for ``wacanon serve`` workers: config from ``WACANON_CONFIG``."""
    from wacanon import logging as wlogging
    from wacanon.config import load

    loaded = load()
    wlogging.configure(loaded.settings.log_level)
    return create_app(loaded.settings)

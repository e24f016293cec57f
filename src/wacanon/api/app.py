"""``create_app(settings)``: the FastAPI application, built from settings, with no globals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from wacanon.api.routes import health, webhooks
from wacanon.api.service import Service
from wacanon.config import Settings


def create_app(settings: Settings, env: Mapping[str, str] | None = None) -> FastAPI:
    service = Service.build(settings, env)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(title="wacanon", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.include_router(webhooks.router)
    app.include_router(health.router)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory for ``wacanon serve`` workers: config from ``WACANON_CONFIG``."""
    from wacanon import logging as wlogging
    from wacanon.config import load

    loaded = load()
    wlogging.configure(loaded.settings.log_level)
    return create_app(loaded.settings)

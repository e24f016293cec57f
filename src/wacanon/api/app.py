"""``create_app(settings)``: the application, built from settings, with no globals.

Webhook POSTs go straight from a small dispatcher to their handler, and everything else
(subscription challenge, health, readiness, metrics) to FastAPI mounted behind a
Starlette app: the webhook path runs thousands of times a second, and a framework's
middleware stack and routing cost more there than the handler's own work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from wacanon.api.replies import reply
from wacanon.api.routes import assignment, business, console, conversations, health, webhooks
from wacanon.api.service import Service
from wacanon.config import Settings
from wacanon.store.conversation_reads import BadCursor

log = structlog.get_logger("wacanon.api")


def create_app(
    settings: Settings, env: Mapping[str, str] | None = None, *, writer_process: bool = False
) -> WebhookFront:
    """The app; ``writer_process`` commits in a child process, as ``wacanon serve`` does
    when ``writer_process`` is configured (the default) — an app made in a process of
    its own (tests, embedding) keeps the writer a thread."""
    service = Service.build(settings, env, writer_process=writer_process)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        service.writer.attach(asyncio.get_running_loop())
        try:
            yield
        finally:
            await service.legacy.aclose()
            await run_in_threadpool(service.stop)

    api = FastAPI(title="wacanon", docs_url=None, redoc_url=None)
    api.state.service = service
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(HTTPException, _http_error)
    api.add_exception_handler(conversations.ApiError, conversations.api_error)
    api.add_exception_handler(BadCursor, conversations.api_error)
    api.include_router(webhooks.router)
    api.include_router(health.router)
    api.include_router(conversations.router)
    api.include_router(assignment.router)
    api.include_router(business.router)
    api.include_router(console.router)
    app = Starlette(routes=[Mount("/", app=api)], lifespan=lifespan)
    app.state.service = service
    return WebhookFront(app)


async def _http_error(request: Request, exc: Exception) -> Response:
    """A path nothing serves (404), a method it does not take (405): ``{"error": …}``,
    the shape of every other refusal (not FastAPI's ``{"detail": …}``)."""
    assert isinstance(exc, HTTPException)
    response = reply(exc.status_code, {"error": str(exc.detail).lower()})
    response.headers.update(exc.headers or {})
    return response


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """A query parameter out of its range or missing: 400 ``{"error": …}``, the shape of
    every other refusal, naming the parameter (not FastAPI's 422 ``detail`` list). A
    JSON body that does not hold what the endpoint needs: 422, naming the field."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = []
    in_body = False
    for error in errors:
        loc = error.get("loc", ())
        in_body = in_body or (bool(loc) and loc[0] == "body")
        where = ".".join(str(p) for p in loc if p not in ("query", "path", "body"))
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return reply(422 if in_body else 400, {"error": "; ".join(parts) or "invalid request"})


class WebhookFront:
    """``POST /webhooks/<provider>`` and ``POST /webhooks/evolution/<event>`` straight to
    their handlers; everything else (and lifespan) to the Starlette app behind.

    :func:`~wacanon.api.routes.webhooks.match_post` is the only place these paths are
    matched; other methods on them reach FastAPI (the Cloud API subscription challenge
    is ``GET /webhooks/cloud_api``).
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = webhooks.match_post(scope["path"])
            if route is not None:
                handler, params = route
                scope["app"] = self.app
                scope["path_params"] = params
                try:
                    response = await handler(Request(scope, receive))
                except Exception:
                    log.exception("webhook handler failed")
                    response = reply(500, {"error": "internal error"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def app_from_environment() -> WebhookFront:
    """uvicorn's factory for ``wacanon serve`` workers: config from ``WACANON_CONFIG``."""
    from wacanon import logging as wlogging
    from wacanon.config import load

    loaded = load()
    wlogging.configure(loaded.settings.log_level)
    return create_app(loaded.settings, writer_process=loaded.settings.writer_process)

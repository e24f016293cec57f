"""``/webhooks/<provider>``: verify, journal, normalize, persist — and only then acknowledge.

Replies are ``{"correlation_id", "events", "duplicates", "ignored"}`` plus the flags of
:meth:`~wacanon.ingest.pipeline.Plan.reply` (``spooled``, ``shadow``, ``unknown_account``,
``dead_letter``): 200 once the webhook is durably stored (or spooled while the database
is away, or kept as a dead letter when the database refused its data), 400 for a body
that is not JSON (kept in the dead letter) or a client that left mid-body (nobody reads
it), 401 for a failed verification, 404 for an unknown provider, 408 for a body not
received in time, 413 for a body over the limit, 503 when too many bodies are in flight
(with ``Retry-After``) or nothing could be stored (the provider retries).
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.requests import ClientDisconnect
from starlette.types import Message

from wacanon.api.comparing import maybe_compare
from wacanon.api.deps import ServiceDep, get_service
from wacanon.api.limits import (
    RETRY_AFTER_SECONDS,
    BodyReadTimeout,
    Overloaded,
    RequestLimits,
    mask_off_loop,
    plan_off_loop,
    refusal,
)
from wacanon.api.replies import reply
from wacanon.api.service import Arrival, Service
from wacanon.canonical.ids import new_correlation_id
from wacanon.errors import VerificationError
from wacanon.ingest.legacy import accounts_of
from wacanon.ingest.pipeline import Received
from wacanon.ingest.verify import verify
from wacanon.ingest.writer import Failed, Spooled
from wacanon.probe import PROBE, PROBE_PROVIDER, is_probe
from wacanon.providers.registry import PROVIDERS

router = APIRouter()
log = structlog.get_logger("wacanon.webhooks")


class BodyTooLarge(Exception):
    """The body passed ``max_body_bytes``."""


async def read_body(request: Request, limit: int, limits: RequestLimits) -> bytes:
    """The whole body, within ``limit`` bytes and ``limits.body_timeout`` seconds, while the
    bodies in flight stay within ``max_inflight_body_bytes`` (a declared length is
    reserved before a byte is read; a body without one is counted as it arrives).

    A body uvicorn already holds whole (a webhook's usually comes in the same packets
    as its headers) is read without a timer: reading it cannot wait, and arming and
    cancelling a timeout for every webhook costs more than the read itself.

    Raises BodyTooLarge, Overloaded, BodyReadTimeout, or ClientDisconnect."""
    declared = request.headers.get("content-length")
    reserved = int(declared) if declared is not None and declared.isdigit() else 0
    if reserved > limit:
        raise BodyTooLarge
    if not limits.gate.take(reserved):
        raise Overloaded
    read = _BodyRead(request.receive, limit, limits, reserved)
    try:
        if _arrived(request.receive):
            return await read.all()
        try:
            async with asyncio.timeout(limits.body_timeout):
                return await read.all()
        except TimeoutError:
            raise BodyReadTimeout from None
    finally:
        limits.gate.give_back(read.reserved)


def _arrived(receive: Callable[[], Awaitable[Message]]) -> bool:
    """uvicorn holds the request's whole body (``more_body`` is false only after the
    last byte came): ``receive`` answers at once. Any other server: not known."""
    cycle = getattr(receive, "__self__", None)
    return getattr(cycle, "more_body", True) is False


class _BodyRead:
    """The ASGI messages of one body, joined, checked against the limits as they come."""

    __slots__ = ("limit", "limits", "receive", "reserved")

    def __init__(
        self,
        receive: Callable[[], Awaitable[Message]],
        limit: int,
        limits: RequestLimits,
        reserved: int,
    ) -> None:
        self.receive = receive
        self.limit = limit
        self.limits = limits
        self.reserved = reserved

    async def all(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.limit:
                    raise BodyTooLarge
                if size > self.reserved:
                    if not self.limits.gate.take(size - self.reserved):
                        raise Overloaded
                    self.reserved = size
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@router.get("/webhooks/cloud_api")
async def cloud_api_challenge(request: Request, service: ServiceDep) -> Response:
    """Meta's subscription check: echo ``hub.challenge`` when the verify token matches."""
    params = request.query_params
    expected = service.settings.providers.cloud_api.verify_token
    given = params.get("hub.verify_token", "")
    if (
        params.get("hub.mode") == "subscribe"
        and expected
        and hmac.compare_digest(given.encode(), expected.encode())
    ):
        return PlainTextResponse(params.get("hub.challenge", ""))
    log.warning("cloud_api subscription challenge refused", mode=params.get("hub.mode"))
    return PlainTextResponse("verify token mismatch", status_code=403)


# The POST handlers take a Starlette request, not FastAPI's dependencies: they run
# thousands of times a second, reached through ``WebhookFront`` (see ``wacanon.api.app``)
# by :func:`match_post`, where FastAPI's routing and dependency solving would cost more
# than the handler's own work.


#: Evolution's event names as its "webhook by events" URLs spell them (``messages-upsert``,
#: ``MESSAGES_UPSERT``, ``messages.upsert``); anything else is not an Evolution URL.
EVOLUTION_EVENT = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


async def evolution_by_event(request: Request) -> Response:
    """Evolution's "webhook by events" URLs (``/webhooks/evolution/messages-upsert``)."""
    event = request.path_params["event"]
    if not EVOLUTION_EVENT.fullmatch(event):
        return reply(404, {"error": "not an Evolution event URL"})
    return await receive(get_service(request), "evolution", request, event)


async def webhook(request: Request) -> Response:
    provider = request.path_params["provider"]
    if provider not in PROVIDERS:
        return reply(404, {"error": f"unknown provider {provider!r}", "providers": list(PROVIDERS)})
    return await receive(get_service(request), provider, request)


def match_post(
    path: str,
) -> tuple[Callable[[Request], Awaitable[Response]], dict[str, str]] | None:
    """The handler and path parameters of a webhook POST path — ``/webhooks/{provider}``
    or ``/webhooks/evolution/{event}``, a parameter never spanning a ``/`` — or None for
    any other path (served by the app behind ``WebhookFront``)."""
    if not path.startswith("/webhooks/"):
        return None
    rest = path[10:]
    if not rest:
        return None
    if "/" not in rest:
        return webhook, {"provider": rest}
    provider, _, event = rest.partition("/")
    if provider == "evolution" and event and "/" not in event:
        return evolution_by_event, {"event": event}
    return None


async def receive(
    service: Service, provider: str, request: Request, path_event: str | None = None
) -> Response:
    started = time.perf_counter()
    correlation_id = new_correlation_id()
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id, provider=provider)
    status = 500
    try:
        response = await _receive(service, provider, request, correlation_id, path_event)
        status = response.status_code
        return response
    finally:
        seconds = time.perf_counter() - started
        probe = request.scope.get(PROBE_SCOPE_KEY, False)
        service.window.webhook(status, seconds, probe=probe)
        if not probe:  # probes stay out of /metrics (wacanon.probe)
            metrics = service.metrics
            metrics.child(metrics.latency, provider).observe(seconds)
            metrics.child(metrics.responses, provider, str(status)).inc()
        structlog.contextvars.unbind_contextvars("correlation_id", "provider")


#: Set in a request's ASGI scope when it turns out to be a probe (read when it is
#: answered): a plain key, where ``request.state`` raises for every webhook that is not one.
PROBE_SCOPE_KEY = "wacanon.probe"


async def _receive(
    service: Service,
    provider: str,
    request: Request,
    correlation_id: str,
    path_event: str | None,
) -> Response:
    settings = service.settings
    limits = RequestLimits.of(request, service)
    try:
        body = await read_body(request, settings.max_body_bytes, limits)
    except ClientDisconnect:  # nobody to answer; one line per 10 s at most, no traceback
        service.metrics.client_disconnects.inc()
        limits.disconnected("client disconnected before its webhook body arrived")
        return Response(status_code=400)
    except Overloaded:
        service.metrics.webhooks.labels(provider, "overloaded").inc()
        limits.refused("too many webhook bodies in flight; answering 503", status=503)
        return refusal(
            503,
            correlation_id,
            "too many webhook bodies in flight; retry later",
            retry_after=RETRY_AFTER_SECONDS,
        )
    except BodyReadTimeout:
        service.metrics.webhooks.labels(provider, "body_timeout").inc()
        limits.refused("webhook body not received in time; answering 408", status=408)
        return refusal(408, correlation_id, f"body not received within {limits.body_timeout:g} s")
    except BodyTooLarge:
        service.metrics.webhooks.labels(provider, "too_large").inc()
        log.warning("webhook body over the limit", limit=settings.max_body_bytes)
        return reply(
            413,
            {
                "correlation_id": correlation_id,
                "error": f"body larger than {settings.max_body_bytes} bytes",
            },
        )
    if provider == PROBE_PROVIDER and is_probe(provider, accounts_of(provider, body)):
        request.scope[PROBE_SCOPE_KEY] = True  # never forwarded, never in /metrics
        return await _verified(service, provider, request, body, correlation_id, path_event, True)
    forwarding = service.legacy.start(provider, request, body, path_event)
    if forwarding is None:
        return await _verified(service, provider, request, body, correlation_id, path_event)
    # Forwarded whatever wacanon makes of it; the provider gets the legacy handler's answer.
    try:
        ours = await _verified(service, provider, request, body, correlation_id, path_event)
    except Exception:  # a bug of ours must not cost the legacy handler its webhook
        log.exception("webhook pipeline failed; the legacy handler still answers")
        ours = reply(503, {"correlation_id": correlation_id, "error": "storage unavailable"})
    return await service.legacy.answer(forwarding, ours, stored_nowhere=ours.status_code == 503)


async def _verified(
    service: Service,
    provider: str,
    request: Request,
    body: bytes,
    correlation_id: str,
    path_event: str | None,
    probe: bool = False,
) -> Response:
    """Verify, then persist: wacanon's own answer to a whole body."""
    settings = service.settings
    try:
        signature_valid = verify(
            provider,
            settings.providers.secret_of(provider),
            settings.providers.allows_unsigned(provider),
            request.headers,
            body,
        )
    except VerificationError as exc:
        service.metrics.signature_failures.labels(provider).inc()
        service.metrics.webhooks.labels(provider, "unauthorized").inc()
        log.warning("webhook refused by verification", reason=str(exc))
        # The reason stays in the log: a caller learns nothing about the configuration.
        return reply(401, {"correlation_id": correlation_id, "error": "unauthorized"})
    kept, masked = await mask_off_loop(provider, body, settings.providers.secret_of(provider))
    received = Received(
        provider, kept, correlation_id, datetime.now(UTC), signature_valid, path_event, masked
    )
    # Only now, with a whole verified body in hand, tell the writer a job is coming: a
    # request still arriving, or one that may fail verification, must not make every
    # commit wait for it (see GroupCommitWriter._gather).
    with service.arrival() as arrival:
        return await _persist(service, received, arrival, probe)


async def _persist(
    service: Service, received: Received, arrival: Arrival, probe: bool = False
) -> Response:
    provider, correlation_id = received.provider, received.correlation_id
    pipeline = service.uncounted_pipeline if probe else service.pipeline
    plan = await plan_off_loop(pipeline, received)
    if probe:  # even a probe nothing was understood of: purged and left out of figures
        plan.write.journal.account_id = plan.write.journal.shopper_id = PROBE
    outcome = await service.persist(plan, received, arrival)
    if isinstance(outcome, Failed):
        service.metrics.webhooks.labels(provider, "unavailable").inc()
        log.error("webhook not stored; asking the provider to retry", reason=outcome.reason)
        return reply(503, {"correlation_id": correlation_id, "error": "storage unavailable"})
    result = None if isinstance(outcome, Spooled) else outcome
    signalled = pipeline.committed(plan, result)
    if plan.invalid_json is not None:
        log.warning("webhook body is not JSON; kept in the dead letter")
        return reply(400, {"correlation_id": correlation_id, "error": plan.invalid_json.message})
    answer = plan.reply(result)
    service.window.normalized(
        bool(plan.result.errors), answer["events"], answer["duplicates"], probe=probe
    )
    if not probe:
        maybe_compare(
            plan, service.flags.for_shopper, service.settings.comparative_logs_sample_rate
        )
    if probe:  # what `wacanon rollout check` measures from the reply
        answer["idempotency_keys"] = [e.idempotency_key for e in plan.result.events]
        answer["signals"] = signalled
    return reply(200, answer)

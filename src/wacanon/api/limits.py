"""What slow, greedy or vanishing clients and huge webhooks may cost the server: bounded.

Two layers:

- The HTTP protocol (:class:`GuardedHttpToolsProtocol`, given to uvicorn by
  :func:`uvicorn_options`): uvicorn's httptools protocol has no header timeout and no
  bound on header size, so a client sending its headers a byte at a time (slowloris), or
  forever, would hold a connection as long as it liked. Headers must be complete within
  ``header_read_timeout_seconds`` (408, or a silent close when not even a request line
  came) and within :data:`MAX_HEADER_BYTES` (431). uvicorn itself caps connections
  (``limit_concurrency`` ← ``max_connections``: 503 above it) and idle keep-alive
  connections (``timeout_keep_alive`` ← ``keep_alive_timeout_seconds``).
- The webhook route (:class:`RequestLimits`, one per app; :func:`plan_off_loop`): a
  body must finish arriving within ``body_read_timeout_seconds`` (408); the bodies being
  received at any moment may declare ``max_inflight_body_bytes`` together at most (503
  with ``Retry-After``, answered at once, nothing read); a client that goes away
  mid-body costs one counter increment and at most one log line per
  :data:`DISCONNECT_LOG_SECONDS`; a body larger than :data:`THREAD_PLAN_BYTES` is
  normalized in a worker thread so the event loop keeps answering everyone else.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import structlog
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from wacanon.api.replies import reply
from wacanon.api.service import Service
from wacanon.config import Settings
from wacanon.ingest.masking import mask_secrets
from wacanon.ingest.pipeline import Pipeline, Plan, Received

log = structlog.get_logger("wacanon.limits")
_T = TypeVar("_T")

#: Bodies above this are normalized in a worker thread (smaller ones cost less than the hop).
THREAD_PLAN_BYTES = 64 * 1024
#: Worker threads normalizing large bodies at once (more would only fight over the GIL).
PLAN_THREADS = 2
#: Request line plus headers, at most (431 above).
MAX_HEADER_BYTES = 64 * 1024
#: At most one "client disconnected" line per this many seconds (with a count of the rest).
DISCONNECT_LOG_SECONDS = 10.0
#: What a 503 for too many bodies in flight tells the client to wait.
RETRY_AFTER_SECONDS = 5


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` / ``uvicorn.Config`` that bound connections."""
    protocol = functools.partial(
        GuardedHttpToolsProtocol, header_timeout=settings.header_read_timeout_seconds
    )
    return {
        # A partial of a module-level class: picklable, so ``--workers N`` gets it too.
        "http": cast(type[asyncio.Protocol], protocol),
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
    }


class HeadersTooLarge(Exception):
    """Raised in a parser callback: request headers over :data:`MAX_HEADER_BYTES`."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline and a size bound on request headers.

    The deadline starts when the connection opens (for its first request) or when the
    first byte of a later request arrives (idle keep-alive connections are uvicorn's
    ``timeout_keep_alive``), and ends when the headers are complete.
    """

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._reading_headers = True
        self._request_started = False
        self._message_began = False
        self._header_bytes = 0
        #: The request line's target and the headers, as the parser hands them over: the
        #: bound holds for headers that end in the bytes just read too (counted by
        #: ``data_received`` only while they are incomplete, a 100 KiB head sent in one
        #: write was let through).
        self._parsed_head = 0
        self._head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counted = self._reading_headers
        if counted:
            self._header_bytes += len(data)
        self._message_began = False
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._message_began and self._reading_headers and not counted:
            self._header_bytes += len(data)  # a request begun here: its headers so far
        elif not self._reading_headers and not self._message_began and self._between_requests():
            # Bytes that begin no request (blank lines, which the parser skips) made
            # uvicorn stop its keep-alive timer: wait for headers as on a new connection.
            self._reading_headers = True
            self._request_started = False
            self._header_bytes = len(data)
        if self._reading_headers:
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(431, b"request headers too large")
            else:  # headers begun (or awaited) but not all here yet
                self._arm_header_timer()

    def _between_requests(self) -> bool:
        """No request of this connection is being answered."""
        cycle = self.cycle
        return cycle is None or cycle.response_complete

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._reading_headers:  # not a chunked body's trailers, which come after
            self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._parsed_head += size
        if self._parsed_head > MAX_HEADER_BYTES:
            self._head_too_large = True
            raise HeadersTooLarge  # the parser stops; uvicorn answers through send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse(431, b"request headers too large")
            return
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        # No timer yet: the headers of a request on a kept-alive connection nearly always
        # arrive whole in the bytes being parsed; data_received arms one if they did not.
        super().on_message_begin()
        self._parsed_head = 0
        self._message_began = True
        self._reading_headers = True
        self._request_started = True

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._reading_headers = False
        self._request_started = False
        self._header_bytes = 0
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and cycle.scope["method"] != "HEAD":  # a new request's
            cycle.transport = _HeadWithBody(self.transport, cycle)  # type: ignore[assignment]

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self._header_timeout, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._reading_headers:
            return
        if self._request_started:
            self._refuse(408, b"request headers not received in time")
        else:  # not a byte of a request: nothing to answer
            self.transport.close()

    def _refuse(self, status: int, message: bytes) -> None:
        self._cancel_header_timer()
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(message)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                message,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


class _HeadWithBody:
    """The transport as one response sees it: a response's status line and headers
    wait for its first body bytes and leave with them, in one write.

    uvicorn writes the head and the body of every response separately: two sends, each
    running the receiving side's TCP work on loopback — a fifth of the event loop's time
    under load. Only a head with a ``content-length`` and a body to come is held, until
    the first body bytes: for a Starlette ``Response`` (every endpoint here) they come in
    the same turn of the loop; a response that waits between its head and its body
    (writing paused by a slow client, a stream) sends its head that much later, never
    different bytes. A response cut short sends its head alone, as uvicorn would.
    """

    __slots__ = ("_cycle", "_head", "_passing", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._passing = False  # the head went: every write goes straight through

    def write(self, data: bytes) -> None:
        if self._passing:
            self._transport.write(data)
            return
        head = self._head
        if head is not None:
            self._head = None
            self._passing = True
            self._transport.write(head + data)
            return
        cycle = self._cycle
        if cycle is None or not cycle.response_started:  # "100 Continue", before any response
            self._transport.write(data)
            return
        # The response's head: the cycle is not needed any more. Letting go of it now
        # breaks the reference cycle (the cycle holds this as its transport), so the
        # request's objects are freed when it ends, not by the garbage collector — which
        # otherwise collects them for every request, and whose full passes stall the loop.
        self._cycle = None
        self._passing = True
        if cycle.chunked_encoding is False and cycle.expected_content_length > 0:
            self._passing = False
            self._head = data
            return
        self._transport.write(data)

    def close(self) -> None:
        self._cycle = None
        head = self._head
        if head is not None:  # a response cut short: its head alone, as uvicorn would
            self._head = None
            self._transport.write(head)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Overloaded(Exception):
    """Bodies in flight already declare ``max_inflight_body_bytes``: 503, read nothing."""


class BodyReadTimeout(Exception):
    """The body did not finish arriving within ``body_read_timeout_seconds``: 408."""


class BodyGate:
    """The bytes of the bodies being received right now (declared, or counted as they come)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def take(self, size: int) -> bool:
        if self.inflight + size > self.limit:
            return False
        self.inflight += size
        return True

    def give_back(self, size: int) -> None:
        self.inflight -= size


class RateLimitedLine:
    """One log line per ``seconds`` at most; the next one says how many were left out."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._next = 0.0
        self._suppressed = 0

    def __call__(self, message: str, **fields: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._seconds
        log.warning(message, suppressed=self._suppressed, **fields)
        self._suppressed = 0


class RequestLimits:
    """The webhook route's limits: one per app, shared by its requests (all on one loop)."""

    def __init__(self, service: Service) -> None:
        settings = service.settings
        self.body_timeout = settings.body_read_timeout_seconds
        self.gate = BodyGate(settings.max_inflight_body_bytes)
        self.disconnected = RateLimitedLine(DISCONNECT_LOG_SECONDS)
        self.refused = RateLimitedLine(DISCONNECT_LOG_SECONDS)

    @classmethod
    def of(cls, request: Request, service: Service) -> RequestLimits:
        """The app's instance (made on its first webhook, on the event loop)."""
        state = request.app.state
        limits: RequestLimits | None = getattr(state, "wacanon_limits", None)
        if limits is None:
            limits = cls(service)
            state.wacanon_limits = limits
        return limits


_planners: ThreadPoolExecutor | None = None


async def plan_off_loop(pipeline: Pipeline, received: Received) -> Plan:
    """Normalize: inline for a small body, in a worker thread for a large one (a
    10,000-message batch takes 0.6 s of CPU, which the event loop must not spend)."""
    if len(received.body) <= THREAD_PLAN_BYTES:
        return pipeline.plan(received)
    return await _off_loop(functools.partial(pipeline.plan, received))


async def mask_off_loop(provider: str, body: bytes, secret: str | None) -> tuple[bytes, bool]:
    """:func:`~wacanon.ingest.masking.mask_secrets`, in a worker thread for a large body
    (one with JSON escapes is decoded and encoded again: 16 ms for 1 MiB)."""
    if len(body) <= THREAD_PLAN_BYTES:
        return mask_secrets(provider, body, secret)
    return await _off_loop(functools.partial(mask_secrets, provider, body, secret))


async def _off_loop(work: Callable[[], _T]) -> _T:
    global _planners
    if _planners is None:  # per process, shared by its apps: the threads hold no state
        _planners = ThreadPoolExecutor(PLAN_THREADS, thread_name_prefix="wacanon-plan")
    context = contextvars.copy_context()  # the log lines keep their correlation id
    return await asyncio.get_running_loop().run_in_executor(
        _planners, functools.partial(context.run, work)
    )


def refusal(
    status: int, correlation_id: str, error: str, retry_after: int | None = None
) -> Response:
    """A JSON refusal that also closes the connection (the rest of the body is not read)."""
    headers = {"Connection": "close"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return reply(status, {"correlation_id": correlation_id, "error": error}, headers)

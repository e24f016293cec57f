"""Legacy passthrough: every webhook that reaches wacanon is also forwarded,
byte-identical, to the team's existing handler — whatever wacanon's own verification and
pipeline do — and the provider gets that handler's answer, so its retries are what they
were (docs/operations.md, "Legacy passthrough").

Two exceptions, both so that nothing is lost: when wacanon could store the webhook
nowhere (database and spool both failed) the answer is 503 whatever the handler said;
when the handler does not answer within ``legacy_timeout_seconds``, 502.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import structlog
from starlette.requests import Request
from starlette.responses import Response

from wacanon.api.replies import reply
from wacanon.config import Settings
from wacanon.ingest.legacy import accounts_of

log = structlog.get_logger("wacanon.legacy")

#: What the legacy handler needs to verify for itself, as the provider sent it.
FORWARDED_HEADERS = (
    "content-type",
    "x-hub-signature-256",
    "x-hub-signature",
    "apikey",
    "x-api-key",
    "authorization",
    "x-wacanon-signature",
    "user-agent",
)


@dataclass(frozen=True, slots=True)
class LegacyAnswer:
    status: int
    body: bytes
    content_type: str | None


class LegacyForwarder:
    """One per service; its HTTP session is made on first use, on the serving loop.

    aiohttp rather than the httpx the rest of wacanon uses: forwarding is on every
    webhook's path, and on this machine httpx's async pool served 300 requests/s at 16
    concurrent (p50 25 ms) where aiohttp served 5,400 (p50 2.9 ms), to the same server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def start(
        self, provider: str, request: Request, body: bytes, path_event: str | None
    ) -> asyncio.Task[LegacyAnswer | None] | None:
        """Begin forwarding (None: nothing configured for this webhook)."""
        if not self.settings.legacy_on:
            return None
        target = self.settings.legacy_target(provider, accounts_of(provider, body))
        if target is None:
            return None
        if path_event is not None:  # Evolution's "webhook by events" URL keeps its event
            target = f"{target.rstrip('/')}/{path_event}"
        if request.url.query:
            target = f"{target}{'&' if '?' in target else '?'}{request.url.query}"
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        return asyncio.create_task(self._forward(target, body, headers))

    async def _forward(
        self, target: str, body: bytes, headers: dict[str, str]
    ) -> LegacyAnswer | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.legacy_timeout_seconds),
                connector=aiohttp.TCPConnector(limit=256),
                skip_auto_headers=("User-Agent", "Content-Type"),  # only the provider's
            )
        try:
            async with self._session.post(target, data=body, headers=headers) as answer:
                content = await answer.read()
                return LegacyAnswer(answer.status, content, answer.headers.get("content-type"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("legacy handler did not answer", target=target, error=type(exc).__name__)
            return None

    async def answer(
        self, task: asyncio.Task[LegacyAnswer | None], ours: Response, stored_nowhere: bool
    ) -> Response:
        """The reply the provider gets (see the module docstring)."""
        legacy = await task
        if stored_nowhere:
            return ours
        if legacy is None:
            return reply(502, {"error": "the legacy webhook handler did not answer"})
        headers = {"content-type": legacy.content_type} if legacy.content_type else None
        return Response(legacy.body, status_code=legacy.status, headers=headers)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

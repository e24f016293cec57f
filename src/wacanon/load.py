"""Posting simulated webhooks to a running server, with latency figures (``simulate --post``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx
import orjson


@dataclass
class PostReport:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    events: int = 0
    duplicates: int = 0
    ignored: int = 0
    shadow: int = 0  # webhooks answered with "shadow": true (normalized, not stored)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, share: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    def summary(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        text = (
            f"posted {self.sent} webhooks in {self.seconds:.1f} s ({rate:,.0f}/s); "
            f"HTTP {codes}; events {self.events}, duplicates {self.duplicates}, "
            f"ignored {self.ignored}; latency p50 {self.percentile(0.5) * 1000:.1f} ms, "
            f"p95 {self.percentile(0.95) * 1000:.1f} ms, p99 {self.percentile(0.99) * 1000:.1f} ms"
        )
        if self.shadow:
            text += (
                f"\nshadow mode: {self.shadow} webhooks were normalized and counted but not "
                "stored (turn it off: wacanon flags set WHATSAPP_CANONICAL_SHADOW_MODE false)"
            )
        return text


async def post_all(
    url: str,
    bodies: Iterable[bytes],
    *,
    headers: dict[str, str],
    concurrency: int = 8,
    progress: Callable[[PostReport], None] | None = None,
) -> PostReport:
    """POST every body (bounded concurrency); never raises for HTTP or network trouble."""
    report = PostReport()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=concurrency * 4)
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            while (body := await queue.get()) is not None:
                await _post_one(client, url, body, headers, report)
                if progress is not None and report.sent % 1000 == 0:
                    progress(report)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        for body in bodies:
            await queue.put(body)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    report.seconds = time.perf_counter() - started
    return report


async def _post_one(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], report: PostReport
) -> None:
    sent = time.perf_counter()
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        report.sent += 1
        report.statuses[0] += 1
        report.failures.append(f"{type(exc).__name__}: {exc}")
        return
    report.latencies.append(time.perf_counter() - sent)
    report.sent += 1
    report.statuses[response.status_code] += 1
    if response.status_code == 200:
        answer = orjson.loads(response.content)
        report.events += int(answer.get("events", 0))
        report.duplicates += int(answer.get("duplicates", 0))
        report.shadow += bool(answer.get("shadow"))
        report.ignored += int(answer.get("ignored", 0))
    elif len(report.failures) < 5:
        report.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")

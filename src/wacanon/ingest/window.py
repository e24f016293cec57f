"""The last hour of webhooks in ten-second buckets: what ``wacanon rollout check`` judges
(normalization rate, error rate, p50/p95/p99) over a window, probes included, without a
Prometheus server in between.

Prometheus counters only grow, so "the last 15 minutes" needs someone who scraped 15
minutes ago; this keeps the answer in the process that saw the webhooks. It is per
process, like ``/metrics`` without multiprocess mode. Probes (:mod:`wacanon.probe`) are
counted here — an idle server is judged on them — and nowhere in ``/metrics``.
Recorded from the event loop only, so it needs no lock.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wacanon.ingest.metrics import LATENCY_BUCKETS

BUCKET_SECONDS = 10
KEEP_SECONDS = 3600
#: The window each process publishes for the console (wacanon.store.node_windows).
LIVE_SECONDS = 300


@dataclass(slots=True)
class Counts:
    webhooks: int = 0
    server_errors: int = 0  # answered 5xx
    json_webhooks: int = 0  # reached the normalizers
    failing: int = 0  # with a part the normalizers did not understand
    events: int = 0
    duplicates: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def of(cls, found: dict[str, Any]) -> Counts:
        """Counts published by another process; one of another shape counts nothing."""
        latency = found.get("latency")
        if not isinstance(latency, list) or len(latency) != len(LATENCY_BUCKETS) + 1:
            return cls()
        fields = {n: int(found.get(n, 0)) for n in cls.__slots__ if n != "latency"}
        return cls(**fields, latency=[int(x) for x in latency])

    def add(self, other: Counts) -> None:
        self.webhooks += other.webhooks
        self.server_errors += other.server_errors
        self.json_webhooks += other.json_webhooks
        self.failing += other.failing
        self.events += other.events
        self.duplicates += other.duplicates
        self.latency = [x + y for x, y in zip(self.latency, other.latency, strict=True)]


@dataclass(slots=True)
class _Bucket:
    """Ten seconds: real traffic and probes apart, so the console can leave probes out."""

    index: int
    traffic: Counts = field(default_factory=Counts)
    probes: Counts = field(default_factory=Counts)


class Window:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: deque[_Bucket] = deque()

    def _now(self, probe: bool) -> Counts:
        index = int(self._clock() // BUCKET_SECONDS)
        if not self._buckets or self._buckets[-1].index != index:
            self._buckets.append(_Bucket(index))
            oldest = index - KEEP_SECONDS // BUCKET_SECONDS
            while self._buckets[0].index <= oldest:
                self._buckets.popleft()
        bucket = self._buckets[-1]
        return bucket.probes if probe else bucket.traffic

    def webhook(self, status: int, seconds: float, probe: bool = False) -> None:
        """One answered webhook: its status and end-to-end seconds."""
        counts = self._now(probe)
        counts.webhooks += 1
        counts.server_errors += status >= 500
        # The first edge >= seconds (past the last: the overflow slot), as Prometheus's le.
        counts.latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def normalized(self, failing: bool, events: int, duplicates: int, probe: bool = False) -> None:
        """What the normalizers made of one JSON webhook."""
        counts = self._now(probe)
        counts.json_webhooks += 1
        counts.failing += failing
        counts.events += events
        counts.duplicates += duplicates

    def counts(self, seconds: float, probes: bool = True) -> tuple[Counts, int]:
        """The counts of the last ``seconds`` (to the bucket) and the probes among them.
        Safe from another thread: the buckets are copied first (one C-level copy under
        the GIL), and a count read mid-update is at most one webhook behind."""
        first = int(self._clock() // BUCKET_SECONDS) - math.ceil(seconds / BUCKET_SECONDS) + 1
        total, probed = Counts(), 0
        for bucket in list(self._buckets):
            if bucket.index >= first:
                total.add(bucket.traffic)
                probed += bucket.probes.webhooks
                if probes:
                    total.add(bucket.probes)
        return total, probed

    def summary(self, seconds: float, probes: bool = True) -> dict[str, Any]:
        """The figures of the last ``seconds`` (at most an hour; to the bucket), probes
        included (what ``rollout check`` judges) or left out (``probes=False``: what the
        console shows, like ``/metrics``)."""
        total, probed = self.counts(seconds, probes)
        return summarize(total, min(seconds, KEEP_SECONDS), probed if probes else 0)


def summarize(total: Counts, seconds: float, probes: int = 0) -> dict[str, Any]:
    """Rates and quantiles of some counts (one process's, or several added up)."""
    return {
        "seconds": seconds,
        "webhooks": total.webhooks,
        "probes": probes,
        "events": total.events,
        "duplicates": total.duplicates,
        "server_errors": total.server_errors,
        "normalization_failures": total.failing,
        "normalization_rate": _share(total.json_webhooks - total.failing, total.json_webhooks),
        "error_rate": _share(total.server_errors + total.failing, total.webhooks),
        "latency_ms": {f"p{q}": _ms(quantile(q / 100, total.latency)) for q in (50, 95, 99)},
    }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def quantile(q: float, counts: Sequence[int]) -> float | None:
    """Prometheus's ``histogram_quantile`` over per-bucket counts (the last: above every
    edge, reported as the highest edge): linear within the bucket the rank falls in."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if seen + count >= rank and count:
            if i == len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            low = LATENCY_BUCKETS[i - 1] if i else 0.0
            return low + (LATENCY_BUCKETS[i] - low) * (rank - seen) / count
        seen += count
    return LATENCY_BUCKETS[-1]

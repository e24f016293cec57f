"""Prometheus metrics, on a registry per app (no import-time globals, tests stay isolated).

Latency histograms use buckets fine enough below 100 ms to read p50 / p95 / p99 with
``histogram_quantile``; rates come from the counters. The seed's alerts (error rate > 1 %,
p95 > 500 ms, duplication > 0.1 %) are written against these names in ``docs/operations.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
)


#: How prometheus-client's multiprocess mode combines the workers' values of a gauge.
Combine = Literal["min", "max", "livemax", "livesum"]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # else: every worker's, by pid
            ProcessCollector(registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def gauge(name: str, doc: str, mode: Combine, labels: tuple[str, ...] = ()) -> Gauge:
            """``mode``: how multiprocess mode combines the workers' values."""
            return Gauge(name, doc, labels, registry=r, multiprocess_mode=mode)

        self.webhooks = counter(
            "wacanon_webhooks_total",
            "Webhooks received, by provider and outcome.",
            ("provider", "outcome"),
        )
        self.events = counter(
            "wacanon_events_total",
            "Canonical events newly stored (or normalized in shadow mode).",
            ("provider", "event_type", "mode"),
        )
        self.duplicates = counter(
            "wacanon_duplicates_total",
            "Events recognized as already stored.",
            ("provider",),
        )
        self.ignored = counter(
            "wacanon_ignored_total",
            "Items with nothing canonical in them.",
            ("provider",),
        )
        self.normalization_errors = counter(
            "wacanon_normalization_errors_total",
            "Parts of webhooks that could not be normalized.",
            ("provider",),
        )
        self.invalid_bodies = counter(
            "wacanon_invalid_json_total",
            "Webhook bodies that are not JSON at all (kept as dead letters, answered 400).",
            ("provider",),
        )
        self.store_errors = counter(
            "wacanon_store_errors_total",
            "Webhooks whose data the database refused (kept as store_error dead letters).",
            ("provider",),
        )
        self.signature_failures = counter(
            "wacanon_signature_failures_total",
            "Webhooks refused by verification.",
            ("provider",),
        )
        self.unknown_accounts = counter(
            "wacanon_unknown_accounts_total",
            "Webhooks for accounts no shopper owns.",
            ("provider",),
        )
        self.signal_failures = counter(
            "wacanon_signal_receiver_failures_total",
            "Signal receivers that raised.",
            ("signal",),
        )
        self.client_disconnects = counter(
            "wacanon_client_disconnects_total",
            "Clients that went away before their webhook body had arrived.",
        )
        self.spool_depth = gauge(
            "wacanon_spool_depth",
            "Webhooks waiting in the spool for the database.",
            "livemax",  # each live worker counts the whole spool directory (every file)
        )
        self.pool_in_use = gauge(
            "wacanon_db_pool_in_use",
            "Database connections checked out of the pool (every process, each second).",
            "livesum",
        )
        self.pool_limit = gauge(
            "wacanon_db_pool_limit",
            "Connections the pools may hold at most (pool size plus overflow, every process).",
            "livesum",
        )
        self.responses = counter(
            "wacanon_webhook_responses_total",
            "Webhook requests answered, by provider and HTTP status.",
            ("provider", "status"),
        )
        self.normalized = counter(
            "wacanon_normalized_webhooks_total",
            "JSON webhooks the normalizers read: result ok, or failed (a part not understood).",
            ("provider", "result"),
        )
        # The store's figures, measured every 30 s by one thread per process (all the
        # same for every worker: "max" across them).
        self.table_rows = gauge(
            "wacanon_table_rows",
            "Rows of wacanon's main tables (PostgreSQL: the planner's estimate).",
            "max",
            ("table",),
        )
        self.database_bytes = gauge(
            "wacanon_database_bytes",
            "Disk used by the database (the SQLite file with its WAL, or pg_database_size).",
            "max",
        )
        self.disk_free_ratio = gauge(
            "wacanon_disk_free_ratio",
            "Free share of the filesystem holding the SQLite file (else the spool).",
            "min",
        )
        self.disk_free_bytes = gauge(
            "wacanon_disk_free_bytes",
            "Free bytes of the filesystem holding the SQLite file (else the spool).",
            "min",
        )
        self.queue_waiting = gauge(
            "wacanon_queue_waiting_conversations",
            "Conversations waiting for an SKM.",
            "max",
        )
        self.queue_oldest = gauge(
            "wacanon_queue_oldest_wait_seconds",
            "How long the conversation waiting longest has waited (0: none waits).",
            "max",
        )
        self.facts_twice = gauge(
            "wacanon_events_stored_twice",
            "Messages stored as two rows among the latest 10,000 events (should be 0).",
            "max",
        )
        self.facts_checked = gauge(
            "wacanon_events_checked_for_twice",
            "Events the stored-twice figure looked at (at most 10,000).",
            "max",
        )
        self.host_cpus = gauge(
            "wacanon_host_cpus",
            "CPUs this process may run on (for CPU-use ratios).",
            "max",
        )
        self.host_memory = gauge(
            "wacanon_host_memory_bytes",
            "Memory of the machine (for memory-use ratios).",
            "max",
        )
        self.latency = Histogram(
            "wacanon_webhook_seconds",
            "End-to-end webhook handling time.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.normalize_latency = Histogram(
            "wacanon_normalize_seconds",
            "Normalization time per webhook.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.persist_latency = Histogram(
            "wacanon_persist_seconds",
            "Time from queueing a webhook to its durable commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            "wacanon_commit_seconds",
            "Duration of one group commit (write and fsync).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "wacanon_commit_batch_webhooks",
            "Webhooks per group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )

        self.routing_lag = Histogram(
            "wacanon_routing_lag_seconds",
            "From a webhook's receipt to its events' conversation being committed.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.routed = counter(
            "wacanon_routed_events_total",
            "Events routing applied (joined to a conversation, or waiting for their message).",
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: the hot path asks for the same few
        children thousands of times a second, and each ``labels()`` call takes a lock
        and builds a key."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.commit_latency.observe(seconds)

"""Everything a running server holds, built from settings by one factory (no globals)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import sqlalchemy as sa
import structlog

from wacanon.api import host
from wacanon.api.exposition import worker_exited
from wacanon.api.legacy import LegacyForwarder
from wacanon.config import Settings
from wacanon.errors import DatabaseUnreachable
from wacanon.ingest.flag_cache import FlagCache
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Plan, Received
from wacanon.ingest.projector import Router, RoutingWorker
from wacanon.ingest.spool import Spool
from wacanon.ingest.window import LIVE_SECONDS, Window
from wacanon.ingest.writer import Failed, Job, Outcome, Writer, checked_writer
from wacanon.ingest.writer_process import ProcessWriter
from wacanon.routing.facts import StoredEvent
from wacanon.store import measures, node_windows
from wacanon.store.database import (
    POOL_OVERFLOW,
    POOL_SIZE,
    create_engine,
    ensure_schema,
    schema_state,
)
from wacanon.store.repository import WebhookWrite

log = structlog.get_logger("wacanon.service")

#: How long a thread may hold the GIL while another waits for it, by database (see
#: :meth:`Service.start`): measured with ``benchmarks/ingest.py``-style wrk runs.
SWITCH_INTERVAL = {"sqlite": 0.00005, "postgresql": 0.0005}
HOUSEKEEPING_SECONDS = 1.0
#: How often the store's figures (table sizes, disk, queue, stored twice) are measured.
MEASURE_SECONDS = 30.0
#: How often each process publishes its live window for the console.
PUBLISH_WINDOW_SECONDS = 5.0
#: Past this, answer 503 (the provider retries) rather than keep the provider waiting.
PERSIST_TIMEOUT_SECONDS = 30.0


#: How long ``/ready`` waits for its check before answering "not ready".
READY_TIMEOUT_SECONDS = 5.0


@dataclass
class Service:
    settings: Settings
    engine: sa.Engine
    metrics: Metrics
    flags: FlagCache
    pipeline: Pipeline
    spool: Spool
    writer: Writer
    routing: RoutingWorker

    def __post_init__(self) -> None:
        self.legacy = LegacyForwarder(self.settings)
        self.window = Window()
        # Probes (wacanon.probe) and the console's replays are planned with metrics nobody
        # exports: /metrics counts the webhooks providers sent, once (as `wacanon replay`).
        self.uncounted_pipeline = Pipeline(self.settings, self.flags.for_shopper, Metrics())
        self._housekeeping = Periodic(HOUSEKEEPING_SECONDS, self._housekeep, "wacanon-housekeeping")
        self._measuring = Periodic(
            MEASURE_SECONDS, self._measure, "wacanon-measures", at_start=True
        )
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self._publishing = Periodic(PUBLISH_WINDOW_SECONDS, self.publish_window, "wacanon-window")
        self._published = False
        self._handover: Handover | None = None
        self._persist_latency = self.metrics.persist_latency
        self._readiness: tuple[asyncio.Future[tuple[bool, str]], float] | None = None

    async def readiness(self) -> tuple[bool, str]:
        """:meth:`ready`, answered within :data:`READY_TIMEOUT_SECONDS`: a database that
        accepts connections but never answers held ``/ready`` (and a thread) for good.
        Probes arriving meanwhile wait on the one check already running."""
        check, started = self._readiness or (None, 0.0)
        now = time.monotonic()
        # One check at a time; one stuck longer than the timeout is left to its fate (the
        # connection's keepalives end it) and the next probe tries afresh.
        if check is None or check.done() or now - started > READY_TIMEOUT_SECONDS:
            check = asyncio.ensure_future(asyncio.to_thread(self.ready))
            self._readiness = (check, now)
        try:
            return await asyncio.wait_for(asyncio.shield(check), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            return False, (
                f"the readiness check did not finish within {READY_TIMEOUT_SECONDS:g} s "
                "(a database that takes connections but does not answer?)"
            )

    def _housekeep(self) -> None:
        """Keep the spool gauge current (the spool only changes while the database is
        away), and the pool's use (``wacanon doctor --url`` judges saturation by it)."""
        if not self.writer.database_up or self.spool.has_records():
            self.metrics.spool_depth.set(self.spool.depth())
        else:
            self.metrics.spool_depth.set(0)
        pool = self.engine.pool
        if isinstance(pool, sa.pool.QueuePool):
            self.metrics.pool_in_use.set(pool.checkedout())

    def _measure(self) -> None:
        """The store's figures as gauges; a database that does not answer skips a turn."""
        m = self.metrics
        m.host_cpus.set(host.cpus())
        m.host_memory.set(host.memory_bytes())
        disk = host.disk_of(self.settings)
        m.disk_free_bytes.set(disk.free)
        m.disk_free_ratio.set(disk.free / disk.total if disk.total else 0)
        try:
            with self.engine.connect() as connection:
                figures = measures.measure(connection)
        except sa.exc.SQLAlchemyError as exc:
            log.info("store figures not measured this turn", error=type(exc).__name__)
            return
        for table, rows in figures.rows.items():
            m.table_rows.labels(table).set(rows)
        m.database_bytes.set(
            figures.database_bytes
            if figures.database_bytes is not None
            else host.sqlite_bytes(self.settings.database_url)
        )
        m.queue_waiting.set(figures.waiting)
        m.queue_oldest.set(figures.oldest_wait_seconds)
        m.facts_twice.set(figures.stored_twice)
        m.facts_checked.set(figures.checked)

    def publish_window(self) -> None:
        """This process's last minutes of webhooks, for every node's console; a database
        that does not answer skips a turn."""
        counts, _ = self.window.counts(LIVE_SECONDS, probes=False)
        try:
            with self.engine.begin() as connection:
                node_windows.publish(connection, self.node, counts.as_dict(), datetime.now(UTC))
            self._published = True
        except sa.exc.SQLAlchemyError as exc:
            log.debug("live window not published this turn", error=type(exc).__name__)

    def _withdraw_window(self) -> None:
        """A stopped node's figures leave every console at once."""
        if not self._published:
            return
        try:
            with self.engine.begin() as connection:
                node_windows.withdraw(connection, self.node)
        except sa.exc.SQLAlchemyError:
            log.debug("live window not withdrawn: the database does not answer")

    @classmethod
    def build(
        cls,
        settings: Settings,
        env: Mapping[str, str] | None = None,
        *,
        writer_process: bool = False,
    ) -> Service:
        """``writer_process``: commit in a child process (``wacanon serve``, see
        :mod:`wacanon.ingest.writer_process`) rather than in a thread of this one."""
        env = os.environ if env is None else env
        engine = create_engine(settings.database_url)
        metrics = Metrics()
        flags = FlagCache.for_settings(engine, env, settings)
        pipeline = Pipeline(settings, flags.for_shopper, metrics)
        spool = Spool(Path(settings.spool_path))
        router = Router(
            engine,
            settings,
            flags.for_shopper,
            pipeline.count_signal_failure,
            on_routed=partial(_observe_routed, metrics),
        )
        routing = RoutingWorker(router)

        def on_batch(webhooks: int, seconds: float) -> None:
            metrics.observe_batch(webhooks, seconds)
            routing.wake()

        writer: Writer
        if writer_process:
            writer = ProcessWriter(settings, env, on_batch, pipeline.drained)
        else:
            writer = checked_writer(
                engine,
                spool,
                pipeline.replan,
                pipeline.drained,
                flags.refresh,
                on_batch=on_batch,
                lock_seconds=settings.writer_lock_timeout_seconds,
            )
        return cls(settings, engine, metrics, flags, pipeline, spool, writer, routing)

    def start(self) -> None:
        """Check the schema (creating a fresh SQLite file), then start the threads.

        The writer thread gives the GIL back at every database call; with the default
        5 ms switch interval, a busy event loop makes it wait up to 5 ms to get the GIL
        back each time, and commits (hence every reply) slow down several-fold. SQLite's
        calls are short CPU work in the writer's own thread: a 50 µs interval gives
        13–17 % more webhooks/s than 0.5 ms there (docs/operations.md, "Capacity").
        PostgreSQL's calls are network round trips, where the shorter interval made no
        difference beyond noise: 0.5 ms. ``gil_switch_interval_seconds``
        overrides it (``benchmarks/ingest.py --switch-intervals`` compares values). It is
        set for the whole process: whatever else runs in it shares the setting.
        """
        interval = self.settings.gil_switch_interval_seconds
        if interval is None:
            interval = SWITCH_INTERVAL.get(self.engine.dialect.name, 0.0005)
        sys.setswitchinterval(interval)
        database_up = True
        try:
            ensure_schema(self.engine)
        except DatabaseUnreachable as exc:
            # The spool exists for exactly this: accept webhooks now, drain when it answers
            # (the writer checks the schema before its first write).
            database_up = False
            log.error("database unreachable at start-up; spooling webhooks", error=str(exc))
        problem = self.spool.problem()
        if problem is not None:
            log.error("spool unusable: an outage of the database will mean 503s", error=problem)
        self.metrics.spool_depth.set(self.spool.depth())
        if isinstance(self.engine.pool, sa.pool.QueuePool):  # what pool_in_use is judged by
            self.metrics.pool_limit.set(POOL_SIZE + POOL_OVERFLOW)
        self.flags.start()
        self.writer.start(database_up=database_up)
        self.routing.start()
        self._housekeeping.start()
        self._measuring.start()
        self._publishing.start()
        # Everything built so far (frameworks, schemas, the engine) lives as long as the
        # process: move it out of the collector's sight, or each full collection walks it
        # all — a 50 ms pause every few seconds under load.
        gc.collect()
        gc.freeze()

    def stop(self) -> None:
        self._housekeeping.stop()
        self._measuring.stop()
        self._publishing.stop()
        self._withdraw_window()
        worker_exited()
        self.writer.stop()
        self.routing.stop()
        self.flags.stop()
        self.engine.dispose()

    def arrival(self) -> Arrival:
        """Tell the writer a webhook is on its way (it gathers batches around arrivals)."""
        return Arrival(self.writer)

    async def persist(self, plan: Plan, received: Received, arrival: Arrival) -> Outcome:
        """Hand the plan to the group-commit writer and wait for its durable outcome."""
        handover = self._handover
        if handover is None:
            handover = self._handover = Handover(asyncio.get_running_loop(), self.writer)
        started = time.perf_counter()
        future = arrival.submit_to(handover, plan.write, received)
        # A plain timer answering the future, not ``asyncio.timeout``: this runs for every
        # webhook, and the timer is a third of the cost.
        deadline = handover.loop.call_later(PERSIST_TIMEOUT_SECONDS, _give_up, future)
        try:
            return await future
        finally:
            deadline.cancel()
            self._persist_latency.observe(time.perf_counter() - started)

    def ready(self) -> tuple[bool, str]:
        """Database reachable, migrations at head, and the spool writable (the spool is what
        keeps webhooks when the database is away: without it an outage means 503s)."""
        problem = self.spool.problem() or self.writer.problem()
        if problem is not None:
            return False, problem
        try:
            state = schema_state(self.engine)
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure as not ready
            return False, f"database unreachable: {exc}"
        if state.problem is not None:
            return False, state.problem
        return True, "ready"


def _observe_routed(metrics: Metrics, routed: Sequence[StoredEvent]) -> None:
    """Routing committed these events: count them, and how long after receipt."""
    now = datetime.now(UTC)
    for event in routed:
        metrics.routing_lag.observe((now - event.received_at).total_seconds())
    metrics.routed.inc(len(routed))


def _give_up(future: asyncio.Future[Outcome]) -> None:
    """No durable outcome in time: answer 503 (the provider retries; nothing was acknowledged)."""
    if not future.done():
        future.set_result(Failed(f"no durable outcome within {PERSIST_TIMEOUT_SECONDS:g} s"))


class Periodic:
    """A daemon thread calling ``work`` every ``seconds`` until stopped."""

    def __init__(
        self, seconds: float, work: Callable[[], None], name: str, at_start: bool = False
    ) -> None:
        self._seconds = seconds
        self._work = work
        self._at_start = at_start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        if self._at_start:
            self._work()
        while not self._stop.wait(self._seconds):
            self._work()


class Handover:
    """The event loop's half of group commit: hand-overs and answers in bulk.

    Handing each webhook to the writer thread, and each answer back to the loop, one at
    a time costs a thread wake-up and a GIL hand-over per webhook — more than the
    webhook's own work. Instead, the jobs submitted during one turn of the loop go to
    the writer together at the end of that turn, and the answers of one commit come
    back in one loop callback.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, writer: Writer) -> None:
        self.loop = loop
        self._writer = writer
        self._pending: list[Job] = []
        self._answers: list[tuple[asyncio.Future[Outcome], Outcome]] = []
        self._answers_lock = threading.Lock()
        self._answering = False
        self._loop_thread = threading.get_ident()

    def submit(self, write: WebhookWrite, source: Received) -> asyncio.Future[Outcome]:
        """Queue one webhook's write (its :meth:`GroupCommitWriter.expect` already made)."""
        future: asyncio.Future[Outcome] = self.loop.create_future()
        if not self._pending:
            self.loop.call_soon(self._hand_over)
        self._pending.append(Job(write, source, partial(self._answer, future)))
        return future

    def _hand_over(self) -> None:
        jobs, self._pending = self._pending, []
        self._writer.submit_many(jobs)

    def _answer(self, future: asyncio.Future[Outcome], outcome: Outcome) -> None:
        """Writer thread: keep the answer; the first of a commit wakes the loop. The loop's
        own thread (the writer process's answers): answer at once."""
        if threading.get_ident() == self._loop_thread:
            if not future.done():
                future.set_result(outcome)
            return
        with self._answers_lock:
            self._answers.append((future, outcome))
            if self._answering:
                return
            self._answering = True
        self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._answers_lock:
            answers, self._answers = self._answers, []
            self._answering = False
        for future, outcome in answers:
            if not future.done():
                future.set_result(outcome)


class Arrival:
    """One request's promise of a job to the writer: submitted once, or withdrawn."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._open = True
        writer.expect()

    def submit_to(
        self, handover: Handover, write: WebhookWrite, source: Received
    ) -> asyncio.Future[Outcome]:
        self._open = False
        return handover.submit(write, source)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._writer.submit(None)

    def __enter__(self) -> Arrival:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

"""Group commit: one writer thread turns many concurrent webhooks into one durable transaction.

A durable commit costs an fsync (SQLite) or a WAL flush (PostgreSQL), so committing each
webhook alone caps throughput at a few thousand per second. Requests instead hand their
writes to this thread and wait; while one transaction commits, the next requests queue
up and go together in the next one. Nothing is acknowledged before its commit, and
SQLite gets the single writer it needs.

When the database is unreachable, the batch goes to the :class:`~wacanon.ingest.spool.Spool`
(fsync-ed, then acknowledged), and while the database stays down new batches go straight
there. When it is back, the same thread drains the spool through the pipeline again —
duplicates are impossible because every row is deduplicated by constraint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
import structlog

from wacanon.ingest.spool import Spool, SpoolRecord
from wacanon.store.database import (
    WRITER_LOCK_SECONDS,
    first_line,
    prepare_writer,
    schema_problem,
)
from wacanon.store.repository import (
    DeadLetter,
    JournalRow,
    WebhookWrite,
    WriteResult,
    committed_before,
    fits_one_statement,
    part_committed_before,
    write_batch,
    write_batch_at_once,
    write_events,
)

log = structlog.get_logger("wacanon.writer")

RETRY_SECONDS = 1.0
#: A drain that keeps failing while the database answers waits up to this between tries.
MAX_DRAIN_BACKOFF_SECONDS = 15.0
DRAIN_CHUNK = 200
SPOOL_CHECK_SECONDS = 5.0
#: How long a batch may wait for requests that are already being processed.
GATHER_SECONDS = 0.004
#: Event rows one transaction carries at most. A webhook with more (a 10,000-message
#: Cloud API batch) is written in parts, with the other webhooks' batches committed in
#: between, so a small webhook never waits for a huge one's whole write (about 0.5 s on
#: SQLite, 3 s on PostgreSQL for 10,000 rows); its journal row comes with its last part.
MAX_TRANSACTION_ROWS = 500


@dataclass(frozen=True, slots=True)
class Spooled:
    """The database was unreachable; the webhook is durably in the spool."""


@dataclass(frozen=True, slots=True)
class Failed:
    """Neither the database nor the spool took the webhook: answer 503 so the provider retries.

    ``data`` is true when the database refused the webhook's own data, even as a dead
    letter — the one failure the spool drain sets aside instead of retrying."""

    reason: str
    data: bool = False


Outcome = WriteResult | Spooled | Failed


class NotWritable(Exception):
    """The database answers but must not be written to yet (its schema is not at head):
    handled like an unreachable database — spool, and check again later."""


class Spoolable(Protocol):
    """What can go to the spool: built only when the database is down."""

    def spool_record(self) -> SpoolRecord: ...


class Writer(Protocol):
    """What the service and its hand-over use of a writer: :class:`GroupCommitWriter`
    in a thread, or ``writer_process.ProcessWriter`` over a child process."""

    database_up: bool

    def start(self, *, database_up: bool = True) -> None: ...
    def attach(self, loop: Any) -> None: ...
    def stop(self, timeout: float = 10.0) -> None: ...
    def expect(self) -> None: ...
    def submit(self, job: Job | None) -> None: ...
    def submit_many(self, jobs: list[Job]) -> None: ...
    def problem(self) -> str | None: ...


@dataclass(slots=True)
class Job:
    write: WebhookWrite
    source: Spoolable
    done: Callable[[Outcome], None]
    finished: bool = False

    def finish(self, outcome: Outcome) -> None:
        """Tell the waiting request, once."""
        if not self.finished:
            self.finished = True
            self.done(outcome)


#: Rebuilds a spooled webhook's write with the pipeline (flags and config as they are now),
#: with an opaque context handed back to ``OnDrained``.
Replan = Callable[[SpoolRecord], tuple[WebhookWrite, object]]
#: Told after each drained chunk commits, so signals and metrics follow the drain.
OnDrained = Callable[[Sequence[tuple[object, WriteResult]]], None]

_STOP = object()
_T = TypeVar("_T")


#: Failures that say the database cannot be used right now, whatever the data: the
#: driver's own errors (unreachable, read-only, out of connections, a permission
#: problem), a schema not at head, no pooled connection in time.
_DATABASE_UNUSABLE = (sa.exc.DBAPIError, NotWritable, sa.exc.TimeoutError, OSError)


def _refused_data(exc: BaseException) -> bool:
    """This webhook's write failed for the webhook itself — as opposed to a database that
    is unusable right now, where the webhook must wait in the spool.

    The data errors the database reports (a value out of range, a constraint) are the
    webhook's; so is anything else raised while writing it: a value the driver cannot
    bind, or a bug of ours. Spooling those would replay the same failure every second;
    set aside alone, the webhook becomes a ``store_error`` dead letter and the rest goes on.
    """
    if isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError):
        return True
    if isinstance(exc, sa.exc.DBAPIError) and _sqlstate(exc)[:2] in _DATA_SQLSTATE_CLASSES:
        return True
    return not isinstance(exc, _DATABASE_UNUSABLE)


#: SQLSTATE classes that name the data whatever class the driver raises them as: data
#: exceptions, constraint violations, and program limits — PostgreSQL's ``index row size
#: exceeds maximum`` for a 10 KB message id is an ``OperationalError`` (class 54) yet
#: says nothing about the database: taken for an outage, it marked the database down for
#: everyone and its spooled webhook was replayed, and refused, every second.
_DATA_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})


def _sqlstate(exc: sa.exc.DBAPIError) -> str:
    """The driver's SQLSTATE for ``exc`` (psycopg's ``sqlstate``), or ``""``."""
    state = getattr(exc.orig, "sqlstate", None)
    return state if isinstance(state, str) else ""


class GroupCommitWriter:
    """The one thread that writes; see the module docstring."""

    def __init__(
        self,
        engine: sa.Engine,
        spool: Spool,
        replan: Replan,
        on_drained: OnDrained,
        *,
        max_batch: int = 256,
        max_rows: int = MAX_TRANSACTION_ROWS,
        on_batch: Callable[[int, float], None] | None = None,
        on_connect: Callable[[sa.Connection], str | None] | None = None,
        after_turn: Callable[[], None] | None = None,
        lock_seconds: float = WRITER_LOCK_SECONDS,
    ) -> None:
        """``after_turn`` is called by the writer's thread after each turn of its loop
        (a commit, a part of a large webhook, a chunk of the drain): the writer process
        sends a turn's answers to the serving process together then. A write waits
        ``lock_seconds`` at most for a lock held elsewhere, then spools
        (``store.database.prepare_writer``)."""
        self._engine = engine
        self._lock_seconds = lock_seconds
        self._after_turn = after_turn
        self._spool = spool
        self._replan = replan
        self._on_drained = on_drained
        self._on_batch = on_batch
        self._on_connect = on_connect
        self._max_batch = max_batch
        self._max_rows = max_rows
        self._large: deque[_Large] = deque()  # webhooks over max_rows, written in parts
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="wacanon-writer", daemon=True)
        self._down_until = 0.0
        self._connection: sa.Connection | None = None
        #: Counts the writer's steps (statements committed, spooled records planned):
        #: the writer process tells its parent it is busy, not stuck, while this moves.
        self.progress = 0
        self._arriving = 0
        self.database_up = True
        self._warned_not_writable = False
        # Draining, one chunk between live batches: the claimed files and the current one.
        self._claims: Iterator[tuple[Path, list[SpoolRecord]]] | None = None
        self._draining: tuple[Path, list[SpoolRecord], int] | None = None
        self._spool_pending = True  # check at start-up; set again whenever we spool
        self._next_spool_check = 0.0
        self._drain_not_before = 0.0
        self._drain_backoff = RETRY_SECONDS

    def start(self, *, database_up: bool = True) -> None:
        """Start the thread; ``database_up=False`` when the database did not answer at
        start-up, so the first webhooks go straight to the spool."""
        if not database_up:
            self.database_up = False
            self._down_until = time.monotonic() + RETRY_SECONDS
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def expect(self) -> None:
        """A request started that will probably submit a job soon (see :meth:`_gather`)."""
        self._arriving += 1

    def submit(self, job: Job | None) -> None:
        """Queue a job; ``None`` only withdraws an :meth:`expect` (the request ended early)."""
        self._arriving -= 1
        if job is not None:
            self._queue.put(job)

    def enqueue(self, jobs: list[Job]) -> None:
        """Queue jobs nobody announced (the writer process's, see
        :mod:`wacanon.ingest.writer_process`): committed with whatever else is queued."""
        self._queue.put(jobs)

    def attach(self, loop: Any) -> None:
        """A thread needs no event loop (see ``ProcessWriter.attach``); only the serving
        process attaches its writer, so this is where it says how it commits."""
        log.info("committing in a writer thread")

    def problem(self) -> str | None:
        """Why webhooks cannot be committed right now: never, for a thread that is running."""
        return None if self._thread.is_alive() else "the writer thread is not running"

    def submit_many(self, jobs: list[Job]) -> None:
        """Queue jobs that were each announced by :meth:`expect`, in one hand-over (one
        wake-up of this thread, however many webhooks)."""
        self._arriving -= len(jobs)
        self._queue.put(jobs)

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        """Commit what comes in; between batches, replay one chunk of the spool if any.

        Nothing in here may kill the thread: requests wait on it. An unexpected error
        fails the batch at hand (503, the provider retries) and the loop goes on.
        """
        while True:
            try:
                first: object | None = (
                    self._queue.get_nowait() if self._large else self._queue.get(timeout=0.5)
                )
            except queue.Empty:
                first = None
            if first is _STOP:
                break
            stop = False
            if first is not None:
                batch, stop = self._gather(first)
                batch = self._set_aside_large(batch)
                if batch:
                    self._guarded(self._commit, batch)
            if self._large:
                self._large_part()
            if stop:
                break
            if self._drain_due():
                self._guarded(self._drain_step, [])
            self._turn_done()
        while self._large:  # stopping: finish what was accepted
            self._large_part()
        self._turn_done()
        self._close_claims()
        if self._connection is not None:
            _discard(self._connection)

    def _turn_done(self) -> None:
        if self._after_turn is not None:
            try:
                self._after_turn()
            except Exception:
                log.exception("writer: after-turn hook failed")

    def _guarded(self, work: Callable[[list[Job]], None], jobs: list[Job]) -> None:
        try:
            work(jobs)
        except Exception as exc:  # see _run: fail the culprit only, keep the thread
            unfinished = [job for job in jobs if not job.finished]
            if len(unfinished) > 1:  # find the culprit: each webhook alone
                for job in unfinished:
                    self._guarded(work, [job])
                return
            log.exception("writer error; answering 503", error=str(exc), webhooks=len(jobs))
            for job in unfinished:
                job.finish(Failed(f"internal error: {type(exc).__name__}"))
            if not jobs:  # the drain itself failed: claim the file again next time
                self._close_claims()

    def _gather(self, first: object) -> tuple[list[Job], bool]:
        """The next batch: what is queued, plus what requests in progress are about to queue.

        Right after a commit, the clients it answered send their next webhooks; committing
        at once would commit them one by one. Waiting a few milliseconds while requests
        are known to be in progress lets one fsync cover them all; an idle server (nothing
        in progress) commits immediately, so low load keeps low latency.
        """
        batch = (
            [first] if isinstance(first, Job) else list(first) if isinstance(first, list) else []
        )
        deadline = time.monotonic() + GATHER_SECONDS
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if self._arriving <= 0 or remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                return batch, True
            if isinstance(item, Job):
                batch.append(item)
            elif isinstance(item, list):
                batch.extend(item)
        return batch, False

    def _set_aside_large(self, batch: list[Job]) -> list[Job]:
        """The batch without its webhooks over ``max_rows``: those are written in parts."""
        small = []
        for job in batch:
            if len(job.write.events) > self._max_rows:
                self._large.append(_Large(job))
            else:
                small.append(job)
        return small

    def _large_part(self) -> None:
        """The next part of the oldest large webhook, in a transaction of its own."""
        job = self._large[0].job
        self._guarded(self._large_step, [job])
        if job.finished:
            self._large.popleft()

    def _large_step(self, _: list[Job]) -> None:
        """One part of ``max_rows`` event rows; the last part with the journal row (and the
        dead letter), by the normal commit path. A part the database refuses sends the
        whole webhook through :meth:`_commit_alone`; an unreachable database, to the spool
        (its replay stores the rest, and counts the parts already stored as this webhook's
        own events, see ``repository._stored_by_same_delivery``)."""
        large = self._large[0]
        job = large.job
        rows = job.write.events
        end = large.done + self._max_rows
        if end >= len(rows):
            last = dataclasses.replace(
                job.write,
                events=rows[large.done :],
                stored_before=large.new_keys,
                rows_before=large.done,
            )
            self._commit([Job(last, job.source, job.finish)])
            return
        if time.monotonic() < self._down_until:
            self._to_spool([job])
            return
        try:
            large.new_keys |= self._write_events(rows[large.done : end], large.new_keys)
        except Exception as exc:  # noqa: BLE001 - sorted by _refused_data
            if not _refused_data(exc):
                self._mark_down(exc)
                self._to_spool([job])
                return
            log.error("large webhook write failed; retrying it whole", error=first_line(exc))
            job.write.resumes = True  # its earlier parts are stored: they are its own
            self._commit_alone(job)
            return
        self._mark_up()
        large.done = end

    def _write_events(self, rows: list[dict[str, Any]], earlier: set[str]) -> set[str]:
        """Event rows only (one part of a large webhook), in one transaction; ``earlier``:
        the keys its earlier parts stored."""
        return self._in_transaction(
            partial(write_events, rows=rows),
            recover=partial(part_committed_before, rows=rows, earlier=earlier),
        )

    def _commit(self, jobs: list[Job]) -> None:
        started = time.perf_counter()
        if time.monotonic() < self._down_until:
            self._to_spool(jobs)
            return
        try:
            results = self._write([job.write for job in jobs])
        except Exception as exc:  # noqa: BLE001 - sorted by _refused_data
            if not _refused_data(exc):  # the database, not the data: spool, retry later
                self._mark_down(exc)
                self._to_spool(jobs)
                return
            log.error("batch write failed; retrying webhooks one by one", error=first_line(exc))
            for index, job in enumerate(jobs):
                rest = jobs[index + 1 :]
                if not self._commit_alone(job) and rest:  # the database, this time:
                    self._to_spool(rest)  # each of the rest would wait for the same lock
                    return
            return
        self._mark_up()
        if self._on_batch is not None:
            self._on_batch(len(jobs), time.perf_counter() - started)
        for job, result in zip(jobs, results, strict=True):
            job.finish(result)

    def _commit_alone(self, job: Job) -> bool:
        """One webhook whose data the database refused: keep it as a dead letter, never lose it.

        The dead letter keeps the journal row's receipt details and the raw body (binary,
        always storable) but none of the values derived from the body, since one of them
        is what the database refused. Only when even that is refused — or the database
        went away meanwhile — does the webhook fail (503, or stay in the spool).

        False when the database, not the data, failed (unreachable, a lock not granted):
        the webhook was spooled, and the caller spools the rest of its batch untried — each
        would wait out the same lock, a batch of 200 for 1,000 s.
        """
        try:
            (result,) = self._write([job.write])
        except Exception as exc:  # noqa: BLE001 - sorted by _refused_data
            if not _refused_data(exc):
                self._mark_down(exc)
                self._to_spool([job])
                return False
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            log.error(
                "database refused a webhook's data; keeping it as a dead letter",
                error=reason,
                correlation_id=job.write.journal.correlation_id,
            )
            try:
                (result,) = self._write([_dead_letter_only(job.write, reason)])
            except Exception as again:  # noqa: BLE001 - sorted by _refused_data
                if not _refused_data(again):
                    self._mark_down(again)
                    self._to_spool([job])
                    return False
                job.finish(Failed(f"refused by the database: {first_line(again)}", data=True))
                return True
            result.refused = reason
        job.finish(result)
        return True

    def _write(self, writes: list[WebhookWrite]) -> list[WriteResult]:
        """Many webhooks in one transaction: on PostgreSQL, usually one statement that
        commits by itself (``write_batch_at_once``)."""
        if fits_one_statement(self._engine.dialect.name, writes):
            return self._in_transaction(
                partial(write_batch_at_once, writes=writes),
                at_once=True,
                recover=partial(committed_before, writes=writes),
            )
        return self._in_transaction(
            partial(write_batch, writes=writes), recover=partial(committed_before, writes=writes)
        )

    def _in_transaction(
        self,
        work: Callable[[sa.Connection], _T],
        *,
        at_once: bool = False,
        recover: Callable[[sa.Connection], _T | None] | None = None,
    ) -> _T:
        """``work`` in one transaction on the writer's own connection, kept open between
        commits (a pool checkout with its liveness ping would add a database round trip
        to every commit). ``at_once``: ``work`` is one statement, committed as it runs.

        A kept connection that the server dropped (a restart) is retried once on a fresh
        one before the database is declared unreachable; a connection that failed is
        never used again. Only a dropped connection is retried: a lock that was not
        granted in time (SQLite's busy timeout, PostgreSQL's ``lock_timeout``) would only
        be waited for again, and sends the batch to the spool at once. Before ``work`` is
        sent again, ``recover`` looks for what it did: the connection may have dropped
        after the database committed it (a statement that commits as it runs, or a
        ``COMMIT`` whose answer never came).
        """
        reused = self._connection is not None
        retrying = False
        while True:
            if self._connection is None:
                self._connection = self._connect()
            connection = self._connection
            try:
                if retrying and recover is not None:
                    found = recover(connection)
                    connection.rollback()
                    if found is not None:
                        self.progress += 1
                        return found
                if at_once:
                    result = _autocommitted(connection, work)
                else:
                    with connection.begin():
                        result = work(connection)
            except sa.exc.DBAPIError as exc:
                self._connection = None
                _discard(connection)
                # A statement that failed (a lock not granted in time, a refused row) is
                # a step too: the writer moved on, it is not stuck (``writer_process._beat``).
                # A drain attempt's lock wait followed by a live batch's is then two
                # silences of one wait each for the serving process, not one of two.
                self.progress += 1
                if not (reused and exc.connection_invalidated):
                    raise
                reused, retrying = False, True
                continue
            self.progress += 1
            return result

    def _connect(self) -> sa.Connection:
        """A new writer connection, checked (``on_connect``) before anything is written."""
        connection = self._engine.connect()
        try:
            prepare_writer(connection, self._lock_seconds)
            problem = self._on_connect(connection) if self._on_connect is not None else None
        except BaseException:
            _discard(connection)
            raise
        if problem is not None:
            _discard(connection)
            raise NotWritable(problem)
        return connection

    def _to_spool(self, jobs: list[Job]) -> None:
        spooled = [
            job for job in jobs if not (isinstance(job.source, _Spooled) and job.source.kept)
        ]
        try:
            if spooled:
                self._spool.append([job.source.spool_record() for job in spooled])
        except OSError as exc:
            log.error("spool write failed", error=str(exc), webhooks=len(jobs))
            for job in jobs:
                job.finish(Failed(f"database unreachable and spool unwritable: {exc}"))
            return
        self._spool_pending = True
        for job in jobs:
            job.finish(Spooled())

    def _mark_down(self, exc: BaseException) -> None:
        if self.database_up:
            log.error("database unusable; spooling webhooks", error=first_line(exc))
        elif isinstance(exc, NotWritable) and not self._warned_not_writable:
            log.error("database answers but cannot be written; spooling", error=str(exc))
            self._warned_not_writable = True
        self.database_up = False
        self._down_until = time.monotonic() + RETRY_SECONDS

    def _mark_up(self) -> None:
        if not self.database_up:
            log.info("database reachable again; draining the spool")
        self.database_up = True
        self._warned_not_writable = False
        self._down_until = 0.0

    # ------------------------------------------------------------ draining

    def _drain_due(self) -> bool:
        """Spooled webhooks wait and the database is not known to be down."""
        now = time.monotonic()
        if now < self._down_until or now < self._drain_not_before:
            return False
        if self._draining is not None or self._spool_pending:
            return True
        if now >= self._next_spool_check:  # other workers' files, left by a crash
            self._next_spool_check = now + SPOOL_CHECK_SECONDS
            try:
                self._spool_pending = self._spool.has_records()
            except OSError as exc:  # outside _guarded: it must not end the thread
                log.error("spool directory cannot be read", error=str(exc))
        return self._spool_pending

    def _drain_step(self, _jobs: list[Job]) -> None:
        """Replay one chunk of the spool through the normal commit path.

        Called between live batches, so a steady stream of webhooks never starves the
        drain and the drain never holds up live webhooks for more than one chunk. Before
        claiming a file, the database must answer: while it is down, nothing is re-read.

        A record that cannot be stored for what it holds (it cannot be planned, or the
        database refuses even its dead letter) is set aside in the spool's rejected file
        so the rest drains; only a database that cannot take the writes (unreachable,
        or a lock held elsewhere) keeps the file for later — as it is, when its first
        chunk failed, with attempts further and further apart (up to
        :data:`MAX_DRAIN_BACKOFF_SECONDS`) while the database answers but refuses.
        """
        current = self._draining or self._claim_next()
        if current is None:
            return
        path, records, start = current
        chunk = records[start : start + DRAIN_CHUNK]
        outcomes: dict[int, Outcome] = {}
        planned: list[tuple[tuple[WebhookWrite, object], SpoolRecord]] = []
        # Set aside once the chunk is done with (a kept file is planned again next time).
        unplannable: list[tuple[SpoolRecord, str]] = []
        for record in chunk:
            self.progress += 1
            try:
                planned.append((self._replan(record), record))
            except Exception as exc:  # noqa: BLE001 - any record that cannot be planned
                unplannable.append((record, f"{type(exc).__name__}: {exc}"))
        # At the start of a file, a record that cannot be written now stays where it is
        # (the file is kept for the next attempt); further in, the rest of the file is
        # moved to the spool instead, so what this file stored is not replayed again.
        kept = start == 0
        jobs = [
            Job(write, _Spooled(r, kept), partial(outcomes.__setitem__, index))
            for index, ((write, _), r) in enumerate(planned)
        ]
        self._guarded(self._commit, jobs)
        stored: list[tuple[object, WriteResult]] = []
        refused: list[tuple[SpoolRecord, str]] = []
        waiting: list[SpoolRecord] = []  # to be tried again: the database did not take them
        for index, ((_, context), record) in enumerate(planned):
            outcome = outcomes.get(index)
            if isinstance(outcome, WriteResult):
                stored.append((context, outcome))
            elif isinstance(outcome, Failed) and outcome.data:
                refused.append((record, outcome.reason))
            elif not isinstance(outcome, Spooled) or kept:  # Spooled, not kept: moved back
                waiting.append(record)
        if stored:
            self._on_drained(stored)
            self._drain_backoff = RETRY_SECONDS
        rest = records[start + len(chunk) :]
        if (
            kept
            and waiting
            and stored
            and self._move_unstored(path, [*waiting, *rest], unplannable, refused)
        ):
            return
        if waiting or (refused and not self.database_up):  # not the data: keep the file
            self._close_claims()
            self._drain_not_before = time.monotonic() + self._drain_backoff
            # The database answers but does not take the writes (a lock held elsewhere
            # for minutes, a disk full): each attempt replans a chunk and waits for the
            # lock, so attempts come less often the longer it lasts.
            self._drain_backoff = min(MAX_DRAIN_BACKOFF_SECONDS, self._drain_backoff * 2)
            return
        for record, reason in [*unplannable, *refused]:
            self._spool.reject(record, reason)
        if rest and not self.database_up:  # down again mid-file: move the rest, unread
            try:
                self._spool.append(rest)
            except OSError as exc:
                log.error("spool write failed; the claimed file stays", error=str(exc))
                self._close_claims()
                return
            self._spool_pending = True
            rest = []
        if rest:
            self._draining = (path, records, start + len(chunk))
            return
        self._spool.done(path)
        self._draining = None
        log.info("spool file replayed", file=path.name, webhooks=len(records))

    def _move_unstored(
        self,
        path: Path,
        waiting: list[SpoolRecord],
        unplannable: list[tuple[SpoolRecord, str]],
        refused: list[tuple[SpoolRecord, str]],
    ) -> bool:
        """Part of a file's first chunk was stored before the database stopped taking
        writes (one by one, after a record it refused): keeping the file would replay the
        stored part, answered and counted again as duplicates. What did not go in, and the
        rest of the file (``waiting``), move to the spool instead; a record refused while
        the database is not known to be up waits too. False when the spool cannot be
        written (the file is then kept, as for a chunk that stored nothing)."""
        if not self.database_up:
            waiting, refused = [*waiting, *(record for record, _ in refused)], []
        try:
            self._spool.append(waiting)
        except OSError as exc:
            log.error("spool write failed; the claimed file stays", error=str(exc))
            return False
        for record, reason in [*unplannable, *refused]:
            self._spool.reject(record, reason)
        self._spool.done(path)
        self._spool_pending = True
        self._close_claims()
        self._drain_not_before = time.monotonic() + self._drain_backoff
        log.info("spool file partly replayed; the rest waits", file=path.name, left=len(waiting))
        return True

    def _claim_next(self) -> tuple[Path, list[SpoolRecord], int] | None:
        if self._claims is None:
            if not self._database_answers():
                return None
            self._claims = self._spool.claim()
        try:
            path, records = next(self._claims)
        except StopIteration:
            self._claims = None
            self._spool_pending = False
            return None
        self._draining = (path, records, 0)
        return self._draining

    def _close_claims(self) -> None:
        if self._claims is not None:
            close = getattr(self._claims, "close", None)
            if close is not None:
                close()
        self._claims = None
        self._draining = None

    def _database_answers(self) -> bool:
        try:
            if self._connection is None:
                self._connection = self._connect()
            self._connection.exec_driver_sql("SELECT 1")
            self._connection.rollback()
        except (sa.exc.DBAPIError, NotWritable) as exc:
            if self._connection is not None:
                _discard(self._connection)
                self._connection = None
            self._mark_down(exc)
            return False
        self._mark_up()
        return True


@dataclass(slots=True)
class _Large:
    """A webhook over ``max_rows`` being written in parts: rows written so far, keys new."""

    job: Job
    done: int = 0
    new_keys: set[str] = dataclasses.field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Spooled:
    """A record being drained. ``kept``: it is still in the file being drained, which
    stays as it is if the record cannot be written now — appending it to the spool again
    would rewrite the spool at every attempt while the database stays unusable."""

    record: SpoolRecord
    kept: bool = False

    def spool_record(self) -> SpoolRecord:
        return self.record


def _dead_letter_only(write: WebhookWrite, reason: str) -> WebhookWrite:
    """What is left of a refused webhook: its receipt and raw body, as a ``store_error``."""
    j = write.journal
    journal = JournalRow(
        correlation_id=j.correlation_id,
        received_at=j.received_at,
        provider=j.provider,
        body=j.body,
        body_sha256=j.body_sha256,
        signature_valid=j.signature_valid,
        outcome="store_error",
        body_masked=j.body_masked,
        errors=j.errors,
    )
    return WebhookWrite(journal=journal, dead_letter=DeadLetter(kind="store_error", error=reason))


def _discard(connection: sa.Connection) -> None:
    """Close the writer's connection for good: never back to the pool, where another
    user would inherit its settings (``prepare_writer``: its lock wait, a WAL
    checkpoint threshold)."""
    with contextlib.suppress(sa.exc.SQLAlchemyError):
        connection.invalidate()
    connection.close()


def _autocommitted(connection: sa.Connection, work: Callable[[sa.Connection], _T]) -> _T:
    """``work`` — one statement, atomic by itself — committed by the database as it runs:
    no ``BEGIN`` and ``COMMIT`` round trips. The connection is transactional again after."""
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with connection.begin():  # SQLAlchemy's bookkeeping only, in autocommit
            return work(connection)
    finally:
        if not (connection.closed or connection.invalidated):
            connection.execution_options(isolation_level=connection.default_isolation_level)


def checked_writer(
    engine: sa.Engine,
    spool: Spool,
    replan: Replan,
    on_drained: OnDrained,
    refresh_flags: Callable[[], None],
    *,
    on_batch: Callable[[int, float], None] | None = None,
    after_turn: Callable[[], None] | None = None,
    lock_seconds: float = WRITER_LOCK_SECONDS,
) -> GroupCommitWriter:
    """The writer a server commits with — its thread, or its writer process's — one way.

    Before it uses a new connection the schema is checked, and the flag overrides are
    read again (``refresh_flags``), so webhooks drained after an outage obey today's flags.
    """

    def on_connect(connection: sa.Connection) -> str | None:
        problem = schema_problem(connection)
        if problem is None:
            refresh_flags()
        return problem

    return GroupCommitWriter(
        engine,
        spool,
        replan,
        on_drained,
        on_batch=on_batch,
        on_connect=on_connect,
        after_turn=after_turn,
        lock_seconds=lock_seconds,
    )

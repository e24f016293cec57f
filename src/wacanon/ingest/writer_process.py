"""The group-commit writer in a process of its own, fed and answered by the event loop.

A writer thread in the serving process shares the interpreter lock with the event loop:
at each call into SQLite or psycopg it gives the lock up and must wait for the busy loop
to hand it back, so commits that overlap the loop's work take several times longer, and
the loop slows down too (docs/operations.md, "Capacity"). Here the same
:class:`~wacanon.ingest.writer.GroupCommitWriter` runs in a child process
(``python -m wacanon.ingest.writer_process``); the serving process's event loop writes
each turn's jobs to the child's stdin and reads the outcomes from its stdout, with no
thread of its own in between.

Nothing changes in what is acknowledged: a webhook is answered when the child reports
its outcome (stored, spooled, or failed). If the child dies, every webhook waiting on it
is answered 503 (the provider retries; one already committed is then a duplicate) and
a new child is started. If the serving process dies, the child sees its stdin close,
finishes what it was handed, and exits.

Frames are a 4-byte big-endian length and a pickle, both ways, between two processes
of one installation over private pipes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

import structlog

from wacanon.ingest.spool import SpoolRecord
from wacanon.ingest.writer import Failed, Job, OnDrained, Outcome
from wacanon.store.repository import JournalRow

log = structlog.get_logger("wacanon.writer")

_HEADER = struct.Struct("!I")
#: Seconds before a child that died is started again.
RESTART_SECONDS = 1.0


def frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class Frames:
    """Whole messages out of a byte stream that arrives in pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Any]:
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + size
            if len(self._buffer) < end:
                return
            message = pickle.loads(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            yield message


class ProcessWriter:
    """The serving process's side: the interface of ``GroupCommitWriter`` that the
    service and its ``Handover`` use, over a child process."""

    def __init__(
        self,
        settings: object,
        env: Mapping[str, str],
        on_batch: Callable[[int, float], None],
        on_drained: OnDrained,
    ) -> None:
        self._settings = settings
        self._env = dict(env)
        self._on_batch = on_batch
        self._on_drained = on_drained
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsent = bytearray()
        self._frames = Frames()
        self._stopping = False
        self._database_up_at_start = True
        self.database_up = True

    def start(self, *, database_up: bool = True) -> None:
        """Start the child (from any thread); it begins writing once :meth:`attach`-ed."""
        self._database_up_at_start = database_up
        self.database_up = database_up
        self._spawn()

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "wacanon.ingest.writer_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,  # the child's own metrics are never exported: the parent counts
        )
        self._frames = Frames()
        self._unsent = bytearray(
            frame(("init", self._settings, self._env, self._database_up_at_start))
        )
        if self._loop is not None:
            self._connect()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve the child from ``loop`` (the event loop's own thread calls this)."""
        self._loop = loop
        if self._process is not None:
            self._connect()

    def _connect(self) -> None:
        assert self._loop is not None
        assert self._process is not None
        stdin, stdout = self._pipes()
        os.set_blocking(stdin.fileno(), False)
        os.set_blocking(stdout.fileno(), False)
        self._loop.add_reader(stdout.fileno(), self._readable)
        self._flush()

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self._process is not None
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None
        assert stdout is not None
        return stdin, stdout

    def expect(self) -> None:
        """Nothing to prepare: the child commits whatever it has been handed."""

    def submit(self, job: Job | None) -> None:
        if job is not None:
            self.submit_many([job])

    def submit_many(self, jobs: list[Job]) -> None:
        """Hand jobs to the child (on the event loop's thread): one frame for all."""
        if self._process is None or self._stopping or self._loop is None:
            for job in jobs:
                job.finish(Failed("the writer process is not running"))
            return
        items = []
        for job in jobs:
            key = next(self._ids)
            self._jobs[key] = job
            items.append((key, job.write))
        self._unsent += frame(("jobs", items))
        self._flush()

    def _flush(self) -> None:
        assert self._loop is not None
        stdin, _ = self._pipes()
        while self._unsent:
            try:
                written = os.write(stdin.fileno(), self._unsent)
            except BlockingIOError:
                self._loop.add_writer(stdin.fileno(), self._writable)
                return
            except (BrokenPipeError, ConnectionResetError):
                return  # the reader sees the child go and answers everyone
            del self._unsent[:written]
        self._loop.remove_writer(stdin.fileno())

    def _writable(self) -> None:
        self._flush()

    def _readable(self) -> None:
        _, stdout = self._pipes()
        try:
            data = os.read(stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return
        if not data:
            self._gone()
            return
        for kind, payload, database_up in self._frames.feed(data):
            self.database_up = database_up
            if kind == "done":
                for key, outcome in payload:
                    job = self._jobs.pop(key, None)
                    if job is not None:
                        job.finish(outcome)
            elif kind == "batch":
                self._on_batch(*payload)
            elif kind == "drained":
                self._on_drained(payload)

    def _gone(self) -> None:
        """The child exited: answer everyone waiting on it, and start another one."""
        assert self._loop is not None
        assert self._process is not None
        stdin, stdout = self._pipes()
        self._loop.remove_reader(stdout.fileno())
        self._loop.remove_writer(stdin.fileno())
        code = self._process.wait()
        stdin.close()
        stdout.close()
        self._process = None
        waiting, self._jobs = self._jobs, {}
        for job in waiting.values():
            job.finish(Failed(f"the writer process exited (status {code})"))
        if self._stopping:
            return
        log.error("writer process exited; starting another", status=code, waiting=len(waiting))
        self._loop.call_later(RESTART_SECONDS, self._restart)

    def _restart(self) -> None:
        if not self._stopping and self._process is None:
            self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the child finish what it was handed, then wait for it (from any thread)."""
        self._stopping = True
        process = self._process
        if process is None:
            return
        stdin, _ = self._pipes()
        if self._loop is None:  # never served: nothing handed over
            stdin.close()
        else:  # closed from the loop, which may still be writing to it
            self._loop.call_soon_threadsafe(self._close_input)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("writer process did not stop in time; killing it")
            process.kill()
            process.wait()

    def _close_input(self) -> None:
        if self._process is None:
            return
        stdin, _ = self._pipes()
        if self._unsent:  # finish handing over what was accepted
            os.set_blocking(stdin.fileno(), True)
            stdin.write(self._unsent)
            self._unsent.clear()
        if self._loop is not None:
            self._loop.remove_writer(stdin.fileno())
        stdin.close()


# ------------------------------------------------------------------ the child


class _JournalSource:
    """What a job spools if the database is away: its receipt, from its journal row."""

    __slots__ = ("journal",)

    def __init__(self, journal: JournalRow) -> None:
        self.journal = journal

    def spool_record(self) -> SpoolRecord:
        from wacanon.ingest.pipeline import Received

        j = self.journal
        received = Received(
            j.provider,
            j.body,
            j.correlation_id,
            j.received_at,
            j.signature_valid,
            j.path_event,
            j.body_masked,
        )
        return received.spool_record()


class _Outbox:
    """Messages to the parent. Everything that produces one runs on the writer's thread
    (answers, commit figures, drained webhooks), which sends a turn's worth in one write
    at the end of the turn (``GroupCommitWriter(after_turn=...)``): no other thread, no
    lock, one wake-up of the serving process per commit."""

    def __init__(self, output: IO[bytes], database_up: Callable[[], bool]) -> None:
        self._output = output
        self._database_up = database_up
        self._answers: list[tuple[int, Outcome]] = []
        self._others: list[tuple[str, Any]] = []
        self._parent_gone = False

    def put(self, kind: str, payload: Any) -> None:
        self._others.append((kind, payload))

    def done(self, key: int, outcome: Outcome) -> None:
        self._answers.append((key, outcome))

    def send(self) -> None:
        if not (self._answers or self._others) or self._parent_gone:
            return
        up = self._database_up()
        data = b"".join(frame((kind, payload, up)) for kind, payload in self._others)
        if self._answers:
            data += frame(("done", self._answers, up))
        self._answers, self._others = [], []
        try:
            self._output.write(data)
            self._output.flush()
        except OSError:
            self._parent_gone = True  # nobody to answer; the writer finishes regardless


def child_main() -> None:
    """The child: build a writer from the parent's settings, then commit what it sends."""
    from wacanon import logging as wlogging
    from wacanon.ingest.flag_cache import FlagCache
    from wacanon.ingest.metrics import Metrics
    from wacanon.ingest.pipeline import Pipeline
    from wacanon.ingest.spool import Spool
    from wacanon.ingest.writer import GroupCommitWriter
    from wacanon.store.database import create_engine, schema_problem

    source, output = sys.stdin.buffer, sys.stdout.buffer
    frames = Frames()
    messages = _messages(source, frames)
    kind, settings, env, database_up = next(messages)
    assert kind == "init"
    wlogging.configure(settings.log_level)
    engine = create_engine(settings.database_url)
    flags = FlagCache(engine, env, settings.flag_refresh_seconds)
    pipeline = Pipeline(settings, flags.for_shopper, Metrics())

    def on_connect(connection: Any) -> str | None:
        problem = schema_problem(connection)
        if problem is None:
            flags.refresh()
        return problem

    writer: GroupCommitWriter | None = None
    outbox = _Outbox(output, lambda: writer is None or writer.database_up)

    def on_drained(stored: Sequence[tuple[object, Any]]) -> None:
        outbox.put("drained", list(stored))

    writer = GroupCommitWriter(
        engine,
        Spool(Path(settings.spool_path)),
        pipeline.replan,
        on_drained,
        on_batch=lambda webhooks, seconds: outbox.put("batch", (webhooks, seconds)),
        on_connect=on_connect,
        after_turn=lambda: outbox.send(),
    )
    flags.start()
    writer.start(database_up=database_up)
    try:
        for message in messages:
            if message[0] == "jobs":
                writer.enqueue(
                    [
                        Job(write, _JournalSource(write.journal), partial(outbox.done, key))
                        for key, write in message[1]
                    ]
                )
    finally:
        writer.stop()  # finish what was handed over (also when the parent went away)
        outbox.send()
        flags.stop()
        engine.dispose()


def _messages(source: IO[bytes], frames: Frames) -> Iterator[Any]:
    """Messages as they come; the parent closing the pipe ends them."""
    while data := os.read(source.fileno(), 1 << 20):
        yield from frames.feed(data)


if __name__ == "__main__":
    child_main()

"""The group-commit writer in a process of its own, fed and answered by the event loop.

A writer thread in the serving process shares the interpreter lock with the event loop:
at each call into SQLite or psycopg it gives the lock up and must wait for the busy loop
to hand it back, so commits that overlap the loop's work take several times longer, and
the loop slows down too (docs/operations.md, "Capacity"). Here the same
:class:`~wacanon.ingest.writer.GroupCommitWriter` runs in a child process
(``python -m wacanon.ingest.writer_process``); the serving process's event loop writes
each turn's jobs to the child's stdin and reads the outcomes from a pipe of their own,
with no thread of its own in between.

Nothing changes in what is acknowledged: a webhook is answered when the child reports
its outcome (stored, spooled, or failed). If the child dies, every webhook it was handed
is answered 503 (the provider retries; one already committed is then a duplicate); the
webhooks that come while a new child starts wait for it (``/ready`` says why
meanwhile). If the serving process dies, the child sees its stdin close, finishes what
it was handed, and exits.

Frames are an 8-byte big-endian length, a codec byte and the message, both ways, between
two processes of one installation over private pipes: jobs on the child's stdin, answers
on a pipe of their own (``--answers-fd``), so nothing the child or a library prints can
be taken for one. Bytes that are not a frame end that child like a crash. The two
messages of every webhook — its job, and its answer — are MessagePack typed by msgspec
(:func:`jobs_frame`, :func:`done_frame`); pickling them cost the event loop about a tenth
of its time (mostly their timestamps). Everything else, and any job or answer
MessagePack cannot carry exactly, is a pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import structlog

from wacanon.ingest.pipeline import Pipeline, Plan, Received
from wacanon.ingest.spool import SpoolRecord
from wacanon.ingest.writer import Failed, Job, OnDrained, Outcome
from wacanon.store.repository import JournalRow, WebhookWrite, WriteResult

log = structlog.get_logger("wacanon.writer")

_HEADER = struct.Struct("!Q")
#: No frame of ours comes near this: a larger length means the stream is not ours.
MAX_FRAME_BYTES = 1 << 34
#: Seconds before a child that died is started again (doubling up to a minute while
#: starting one fails).
RESTART_SECONDS = 1.0
ANSWERS_FD_ARG = "--answers-fd"
#: A child that has webhooks to answer and has sent nothing for this long — no answer,
#: and no word that its writer moved on (:func:`_beat`) — is reported by ``/ready``
#: (stopped, or stuck in the disk): its webhooks are waiting for nothing.
STALL_REPORT_SECONDS = 10.0
#: ... and past this, killed and replaced; its webhooks have had their 503 by then
#: (``PERSIST_TIMEOUT_SECONDS``). A lock held elsewhere does not come to this: the writer
#: waits ``writer_lock_timeout_seconds`` (5 s) at most, then spools
#: (``store.database.prepare_writer``).
STALL_KILL_SECONDS = 45.0
#: How often the serving process looks at its child's silence.
WATCH_SECONDS = 1.0
#: How often a busy child says it is still moving on.
BEAT_SECONDS = 1.0
#: The child's GIL switch interval: its reader and its writer thread share little.
CHILD_SWITCH_INTERVAL = 0.0005


class FrameError(Exception):
    """Bytes that are not a frame of ours: the other side is not a writer process."""


#: The codec byte after a frame's length.
_PICKLE, _JOBS, _DONE = b"p", b"j", b"d"
_ENCODER = msgspec.msgpack.Encoder()
#: A jobs frame is read job by job: one whose write does not decode is answered failed,
#: and the others of its frame go on (see :class:`UnreadableJob`).
_JOBS_DECODER = msgspec.msgpack.Decoder(list[tuple[int, msgspec.Raw]])
_WRITE_DECODER = msgspec.msgpack.Decoder(WebhookWrite)
_DONE_DECODER = msgspec.msgpack.Decoder(tuple[list[tuple[int, WriteResult]], bool])
#: What MessagePack refuses to carry (an integer over 64 bits, a lone surrogate): such a
#: message goes as a pickle.
_NOT_MSGPACK = (TypeError, ValueError, OverflowError, UnicodeEncodeError)
#: The classes an event row's value keeps exactly through MessagePack (and an aware
#: ``datetime``, its instant). A tuple would come back a list, an enum or a ``Decimal``
#: a string, a naive time text: a row holding one goes as a pickle.
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})


def _exact_fields(cls: type) -> tuple[tuple[str, type], ...]:
    """The fields of ``cls`` whose declared type is one class the typed decoder insists
    on (it refuses a bool for an int and an int for a bool), from the dataclass itself."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (f.name, hints[f.name])
        for f in dataclasses.fields(cls)
        if hints[f.name] in (bool, int, bytes, datetime)
    )


_JOURNAL_FIELDS = _exact_fields(JournalRow)
_WRITE_FIELDS = _exact_fields(WebhookWrite)
_RESULT_FIELDS = _exact_fields(WriteResult)


@dataclass(frozen=True, slots=True)
class UnreadableJob:
    """A job whose frame arrived whole but whose write did not decode (a bug of ours, or
    another version's writer): answered failed (503, the provider retries), and the
    other jobs of its frame are written."""

    reason: str


def frame(message: object) -> bytes:
    """Any message, as a pickle."""
    return _framed(_PICKLE, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def jobs_frame(items: list[tuple[int, WebhookWrite]]) -> bytes:
    """``("jobs", items)``: webhooks handed to the child, each under its key — MessagePack
    when every write comes back exactly as it left (:func:`_exact_in_msgpack`), else a
    pickle."""
    if all(_exact_in_msgpack(write) for _, write in items):
        try:
            return _framed(_JOBS, _ENCODER.encode(items))
        except _NOT_MSGPACK:
            pass
    return frame(("jobs", items))


def _exact_in_msgpack(write: WebhookWrite) -> bool:
    """The typed decoder gets back what was sent: the fields of the journal row and the
    write have the classes it expects (it refuses a bool for an int, an int for a bool),
    and every value of an event row — a dict of any values — is of a class MessagePack
    keeps (:data:`_PLAIN`, or an aware ``datetime``; a naive one would come back text)."""
    if not (_of_classes(write.journal, _JOURNAL_FIELDS) and _of_classes(write, _WRITE_FIELDS)):
        return False
    plain = _PLAIN
    for row in write.events:
        for value in row.values():
            kind = value.__class__
            if kind not in plain and not (kind is datetime and value.tzinfo is not None):
                return False
    return True


def done_frame(answers: list[tuple[int, Any]], database_up: bool) -> bytes:
    """``("done", answers, database_up)``: outcomes by key — MessagePack for results of
    the classes its decoder expects, else (a spooled or failed one, rarer) a pickle."""
    if all(
        outcome.__class__ is WriteResult and _of_classes(outcome, _RESULT_FIELDS)
        for _, outcome in answers
    ):
        try:
            return _framed(_DONE, _ENCODER.encode((answers, database_up)))
        except _NOT_MSGPACK:
            pass
    return frame(("done", answers, database_up))


def _of_classes(value: object, fields: tuple[tuple[str, type], ...]) -> bool:
    """Each of ``fields`` of ``value`` is exactly of its class (an aware time, if a time)."""
    for name, kind in fields:
        field: Any = getattr(value, name)
        if field.__class__ is not kind:
            return False
        if kind is datetime and getattr(field, "tzinfo", None) is None:
            return False
    return True


def _framed(codec: bytes, data: bytes) -> bytes:
    return _HEADER.pack(len(data) + 1) + codec + data


def _unframe(codec: int, data: bytes) -> Any:
    if codec == _JOBS[0]:
        return ("jobs", [(key, _job(raw)) for key, raw in _JOBS_DECODER.decode(data)])
    if codec == _DONE[0]:
        answers, database_up = _DONE_DECODER.decode(data)
        return ("done", answers, database_up)
    if codec == _PICKLE[0]:
        return pickle.loads(data)
    raise ValueError(f"no codec {codec!r}")


def _job(raw: msgspec.Raw) -> WebhookWrite | UnreadableJob:
    try:
        return _WRITE_DECODER.decode(raw)
    except msgspec.DecodeError as exc:  # a ValidationError too
        return UnreadableJob(str(exc))


class Frames:
    """Whole messages out of a byte stream that arrives in pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> tuple[bool, Any]:
        """``(True, message)``, or ``(False, None)`` until a whole frame has arrived.

        Raises FrameError for a length no frame of ours has, or a frame that does not
        decode (it is dropped first: it never blocks what comes after)."""
        if len(self._buffer) < _HEADER.size:
            return False, None
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > MAX_FRAME_BYTES:
            raise FrameError(f"a frame of {size} bytes")
        end = _HEADER.size + size
        if len(self._buffer) < end:
            return False, None
        if size == 0:
            del self._buffer[:end]
            raise FrameError("an empty frame")
        codec = self._buffer[_HEADER.size]
        data = bytes(self._buffer[_HEADER.size + 1 : end])
        del self._buffer[:end]
        try:
            return True, _unframe(codec, data)
        except Exception as exc:
            raise FrameError(f"a frame that does not decode: {exc!r}") from exc

    def all(self) -> Iterator[Any]:
        """Every whole message received so far."""
        while True:
            complete, message = self.next()
            if not complete:
                return
            yield message


class _Child:
    """One running writer process and the two pipes to it (raw descriptors)."""

    def __init__(self, settings: object, env: Mapping[str, str], database_up: bool) -> None:
        answers_read, answers_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wacanon.ingest.writer_process",
                    ANSWERS_FD_ARG,
                    str(answers_write),
                ],
                stdin=subprocess.PIPE,
                pass_fds=(answers_write,),
                # The child's metrics are never exported: the serving process counts.
                env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            )
        except BaseException:
            os.close(answers_read)
            raise
        finally:
            os.close(answers_write)
        stdin = self.process.stdin
        assert stdin is not None
        self._stdin = stdin  # kept open: its descriptor is ``jobs``
        self.jobs = stdin.fileno()
        self.answers = answers_read
        self.unsent = bytearray(frame(("init", settings, dict(env), database_up)))
        self.frames = Frames()
        self.input_closed = False

    def close_input(self) -> None:
        if not self.input_closed:
            self.input_closed = True
            self._stdin.close()

    def close(self) -> None:
        self.close_input()
        with contextlib.suppress(OSError):
            os.close(self.answers)


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
        self._child: _Child | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._restart_delay = RESTART_SECONDS
        #: Jobs that came while a writer was being replaced: handed to the next one.
        self._held: list[Job] = []
        #: When the child last sent anything, or was last handed work while owing none.
        self._heard = time.monotonic()
        self._stall_reported = False
        self._watch: asyncio.TimerHandle | None = None
        self.database_up = True

    def start(self, *, database_up: bool = True) -> None:
        """Start the child (from any thread); it begins writing once :meth:`attach`-ed."""
        self.database_up = database_up
        self._child = _Child(self._settings, self._env, database_up)
        log.info("committing in a writer process", pid=self._child.process.pid)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve the child from ``loop`` (the event loop's own thread calls this)."""
        if self._watch is not None:  # another loop's
            self._watch.cancel()
            self._watch = None
        self._loop = loop
        if self._child is not None:
            self._connect(self._child)

    def _connect(self, child: _Child) -> None:
        assert self._loop is not None
        os.set_blocking(child.jobs, False)
        os.set_blocking(child.answers, False)
        self._loop.add_reader(child.answers, self._readable, child)
        self._heard = time.monotonic()
        if self._watch is None:
            self._watch = self._loop.call_later(WATCH_SECONDS, self._watch_silence)
        self._flush(child)

    def silent_for(self) -> float:
        """Seconds the child has owed answers without sending anything (0 if it owes none)."""
        if not self._jobs:
            return 0.0
        return time.monotonic() - self._heard

    def _watch_silence(self) -> None:
        """Report a child that owes answers and says nothing; replace one that stays so."""
        assert self._loop is not None
        self._watch = None
        if self._stopping:
            return
        self._watch = self._loop.call_later(WATCH_SECONDS, self._watch_silence)
        child, silent = self._child, self.silent_for()
        if child is None:
            return
        if silent >= STALL_KILL_SECONDS:
            log.error("writer process stuck; replacing it", pid=child.process.pid,
                      seconds=round(silent), waiting=len(self._jobs))  # fmt: skip
            child.process.kill()
            self._gone(child, killed=True)
        elif silent >= STALL_REPORT_SECONDS and not self._stall_reported:
            self._stall_reported = True
            log.error("writer process not answering; /ready says not ready",
                      pid=child.process.pid, seconds=round(silent),
                      waiting=len(self._jobs))  # fmt: skip

    def expect(self) -> None:
        """Nothing to prepare: the child commits whatever it has been handed."""

    def submit(self, job: Job | None) -> None:
        if job is not None:
            self.submit_many([job])

    def submit_many(self, jobs: list[Job]) -> None:
        """Hand jobs to the child (on the event loop's thread): one frame for all."""
        child = self._child
        if self._stopping or self._loop is None or (child is not None and child.input_closed):
            for job in jobs:
                job.finish(Failed("the writer process is not running"))
            return
        if child is None:  # being replaced: the next writer gets them (within their 30 s)
            self._held.extend(jobs)
            return
        keyed = [(next(self._ids), job) for job in jobs]
        try:
            data = jobs_frame([(key, job.write) for key, job in keyed])
        except Exception:  # a bug of ours: these webhooks get their 503 now, not in 30 s
            log.exception("writer process: jobs could not be handed over; answering 503")
            for job in jobs:
                job.finish(Failed("internal error: the jobs could not be handed to the writer"))
            return
        if not self._jobs:  # owing nothing until now: its silence counts from here
            self._heard = time.monotonic()
        self._jobs.update(keyed)
        child.unsent += data
        self._flush(child)

    def _flush(self, child: _Child) -> None:
        assert self._loop is not None
        if child.input_closed:
            return
        while child.unsent:
            try:
                written = os.write(child.jobs, child.unsent)
            except BlockingIOError:
                self._loop.add_writer(child.jobs, self._flush, child)
                return
            except OSError:  # the child is gone: its reader answers everyone
                child.unsent.clear()
                break
            del child.unsent[:written]
        self._loop.remove_writer(child.jobs)

    def _readable(self, child: _Child) -> None:
        try:
            data = os.read(child.answers, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._gone(child)
            return
        self._heard = time.monotonic()
        if self._stall_reported:
            self._stall_reported = False
            log.info("writer process answers again", pid=child.process.pid)
        child.frames.feed(data)
        while True:
            try:
                complete, message = child.frames.next()
            except FrameError as exc:  # not a writer of ours any more: replace it
                log.error("writer process sent garbage; replacing it", error=str(exc))
                child.process.kill()
                self._gone(child, killed=True)
                return
            if not complete:
                return
            try:
                self._handle(message)
            except Exception:
                log.exception("writer process: a message could not be handled")

    def _handle(self, message: tuple[str, Any, bool]) -> None:
        kind, payload, database_up = message
        self.database_up = database_up
        if kind == "done":
            for key, outcome in payload:
                job = self._jobs.pop(key, None)
                if job is not None:
                    job.finish(outcome)
        elif kind == "progress":  # a long turn under way: hearing it was the point
            pass
        elif kind == "batch":
            self._on_batch(*payload)
        elif kind == "drained":
            self._on_drained(payload)

    def _gone(self, child: _Child, killed: bool = False) -> None:
        """The child exited (or was just ``killed``): answer everyone waiting on it, and
        start another one.

        A killed child is not waited for here: one in the middle of a disk operation
        that does not return dies only when it does, and the event loop must not wait
        with it. It is reaped later (:meth:`_reap`)."""
        assert self._loop is not None
        if self._child is not child:
            return
        self._child = None
        self._stall_reported = False
        self._loop.remove_reader(child.answers)
        if not child.input_closed:
            self._loop.remove_writer(child.jobs)
        child.close()
        if killed:
            code: int | str = "killed"
            self._reap(child.process)
        else:
            code = child.process.wait()
        waiting, self._jobs = self._jobs, {}
        for job in waiting.values():  # committed or not, nobody can tell: the provider retries
            job.finish(Failed(f"the writer process exited (status {code})"))
        if self._stopping:
            self._fail_held()
            log.info("writer process finished", status=code)
            return
        log.error("writer process exited; starting another", status=code, waiting=len(waiting))
        self._loop.call_later(self._restart_delay, self._restart)

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        """Collect a killed child's exit once it has one, without waiting for it."""
        assert self._loop is not None
        if process.poll() is None:
            self._loop.call_later(WATCH_SECONDS, self._reap, process)

    def _restart(self) -> None:
        if self._stopping or self._child is not None:
            return
        try:
            child = _Child(self._settings, self._env, self.database_up)
        except OSError as exc:  # out of memory or descriptors right now: try again later
            self._restart_delay = min(60.0, self._restart_delay * 2)
            log.error("writer process not started; trying again", error=str(exc),
                      seconds=self._restart_delay)  # fmt: skip
            assert self._loop is not None
            self._loop.call_later(self._restart_delay, self._restart)
            return
        self._restart_delay = RESTART_SECONDS
        if self._stopping:  # stop() came while it started: it ends at once
            child.close()
            return
        log.info("committing in a new writer process", pid=child.process.pid, held=len(self._held))
        self._child = child
        self._connect(child)
        held, self._held = self._held, []
        if held:
            self.submit_many(held)

    def _fail_held(self) -> None:
        held, self._held = self._held, []
        for job in held:
            job.finish(Failed("the writer process is not running"))

    def problem(self) -> str | None:
        """Why webhooks cannot be committed right now (``/ready``), or None."""
        if self._child is None and not self._stopping:
            return "the writer process is being replaced"
        silent = self.silent_for()
        if silent >= STALL_REPORT_SECONDS:
            return f"the writer process has not answered for {silent:.0f} s"
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """Let the child finish what it was handed, then wait for it (from any thread)."""
        self._stopping = True  # the watch ends at its next look
        child = self._child
        if child is None:  # between two writers: nobody will take what is held
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._fail_held)
            return
        if self._loop is None:  # never served: nothing handed over
            child.close_input()
        else:  # closed from the loop, which may still be writing to it
            self._loop.call_soon_threadsafe(self._close_input, child)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("writer process did not stop in time; killing it")
            child.process.kill()
            child.process.wait()

    def _close_input(self, child: _Child) -> None:
        """Hand over what was accepted, then close the child's input: it finishes and exits."""
        assert self._loop is not None
        if child.input_closed:
            return
        self._loop.remove_writer(child.jobs)
        if child.unsent:
            with contextlib.suppress(OSError):
                os.set_blocking(child.jobs, True)
                os.write(child.jobs, child.unsent)
            child.unsent.clear()
        child.close_input()


# ------------------------------------------------------------------ the child


class _JournalSource:
    """What a job spools if the database is away: its receipt, from its journal row."""

    __slots__ = ("journal",)

    def __init__(self, journal: JournalRow) -> None:
        self.journal = journal

    def spool_record(self) -> SpoolRecord:
        return Received.from_journal(self.journal).spool_record()


class _Outbox:
    """Messages to the parent. Answers, commit figures and drained webhooks are produced
    on the writer's thread, which sends a turn's worth in one write at the end of the
    turn (``GroupCommitWriter(after_turn=...)``): one wake-up of the serving process per
    commit. The lock keeps whole frames apart: the beat thread (:func:`_beat`) writes
    its own, and at the very end the main thread sends what a writer that did not stop
    in time left."""

    def __init__(self, answers_fd: int, database_up: Callable[[], bool]) -> None:
        self._fd = answers_fd
        self._database_up = database_up
        self._answers: list[tuple[int, Outcome]] = []
        self._others: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._parent_gone = False

    def put(self, kind: str, payload: Any) -> None:
        self._others.append((kind, payload))

    def done(self, key: int, outcome: Outcome) -> None:
        self._answers.append((key, outcome))

    def answer_now(self, key: int, outcome: Outcome) -> None:
        """One answer sent at once, from the thread that reads the jobs (a job that could
        not be read: the writer's thread never sees it)."""
        with self._lock:
            if not self._parent_gone:
                self._write(done_frame([(key, outcome)], self._database_up()))

    def beat(self) -> None:
        """Tell the parent the writer is busy, not stuck (see :func:`_beat`)."""
        with self._lock:
            if self._parent_gone:
                return
            self._write(frame(("progress", None, self._database_up())))

    def send(self) -> None:
        with self._lock:
            answers, others = self._answers, self._others
            self._answers, self._others = [], []
            if not (answers or others) or self._parent_gone:
                return
            up = self._database_up()
            data = b"".join(frame((kind, payload, up)) for kind, payload in others)
            if answers:
                data += done_frame(answers, up)
            self._write(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            self._parent_gone = True  # nobody to answer; the writer finishes regardless


def _slim(plan: object) -> object:
    """What the serving process needs of a drained webhook's plan to count and signal it
    (``Pipeline.committed``): not its body nor its rows, which can be megabytes."""
    if not isinstance(plan, Plan):
        return plan
    journal = dataclasses.replace(plan.write.journal, body=b"")
    return dataclasses.replace(
        plan,
        received=dataclasses.replace(plan.received, body=b""),
        write=WebhookWrite(journal=journal),
    )


def child_main(argv: Sequence[str]) -> None:
    """The child: build a writer from the parent's settings, then commit what it sends.

    It stops when its input closes — the parent stopping or gone — never on a signal:
    Ctrl-C and a service manager's SIGTERM reach the whole process group, and the
    parent must be the one to decide when its writer finishes."""
    from wacanon import logging as wlogging
    from wacanon.ingest.flag_cache import FlagCache
    from wacanon.ingest.metrics import Metrics
    from wacanon.ingest.spool import Spool
    from wacanon.ingest.writer import GroupCommitWriter, checked_writer
    from wacanon.store.database import create_engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers_fd = int(argv[argv.index(ANSWERS_FD_ARG) + 1])
    messages = _messages(sys.stdin.fileno(), Frames())
    kind, settings, env, database_up = next(messages)
    assert kind == "init"
    wlogging.configure(settings.log_level)
    sys.setswitchinterval(CHILD_SWITCH_INTERVAL)
    engine = create_engine(settings.database_url)
    flags = FlagCache.for_settings(engine, env, settings, announce=False)
    pipeline = Pipeline(settings, flags.for_shopper, Metrics())

    writer: GroupCommitWriter | None = None
    outbox = _Outbox(answers_fd, lambda: writer is None or writer.database_up)

    def on_drained(stored: Sequence[tuple[object, Any]]) -> None:
        outbox.put("drained", [(_slim(plan), result) for plan, result in stored])

    writer = checked_writer(
        engine,
        Spool(Path(settings.spool_path)),
        pipeline.replan,
        on_drained,
        flags.refresh,
        on_batch=lambda webhooks, seconds: outbox.put("batch", (webhooks, seconds)),
        after_turn=outbox.send,
        lock_seconds=settings.writer_lock_timeout_seconds,
    )
    flags.start()
    writer.start(database_up=database_up)
    threading.Thread(target=_beat, args=(writer, outbox), name="wacanon-beat", daemon=True).start()
    try:
        for message in messages:
            if message[0] == "jobs" and (jobs := _readable_jobs(message[1], outbox)):
                writer.enqueue(jobs)
    finally:
        writer.stop()  # finish what was handed over (also when the parent went away)
        outbox.send()
        flags.stop()
        engine.dispose()


def _readable_jobs(
    items: list[tuple[int, WebhookWrite | UnreadableJob]], outbox: _Outbox
) -> list[Job]:
    """A jobs frame's jobs for the writer; one that could not be read is answered 503 at
    once (the writer never sees it)."""
    jobs = []
    for key, write in items:
        if isinstance(write, UnreadableJob):
            log.error("writer process: a job could not be read; answering 503", error=write.reason)
            outbox.answer_now(key, Failed(f"the job could not be read: {write.reason}"))
        else:
            jobs.append(Job(write, _JournalSource(write.journal), partial(outbox.done, key)))
    return jobs


def _beat(writer: Any, outbox: _Outbox) -> None:
    """Every :data:`BEAT_SECONDS` in which the writer moved on (a statement committed, a
    spooled record planned), say so: a long turn — a large
    webhook written in parts, a chunk of the spool — is not mistaken for a stuck writer
    (``ProcessWriter._watch_silence``), and one that moves no more is."""
    seen = writer.progress
    while True:
        time.sleep(BEAT_SECONDS)
        progress = writer.progress
        if progress != seen:
            seen = progress
            outbox.beat()


def _messages(fd: int, frames: Frames) -> Iterator[Any]:
    """Messages as they come; the parent closing the pipe ends them."""
    while data := os.read(fd, 1 << 20):
        frames.feed(data)
        yield from frames.all()


if __name__ == "__main__":
    child_main(sys.argv)

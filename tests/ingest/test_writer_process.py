"""``wacanon serve`` commits in a writer process of its own: it may die, its parent may
die, and nothing acknowledged is lost either way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
import pytest
import sqlalchemy as sa

from tests.api.conftest import PERSIST, bearer, sim_body, sim_message
from tests.api.test_slow_clients import Server
from tests.ingest.test_durability import _free_port, _start_server, serve_config
from wacanon.config import Settings
from wacanon.ingest import writer_process
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Received
from wacanon.ingest.writer import Failed, Spooled
from wacanon.ingest.writer_process import (
    FrameError,
    Frames,
    UnreadableJob,
    done_frame,
    frame,
    jobs_frame,
)
from wacanon.store.database import create_engine, upgrade
from wacanon.store.repository import DeadLetter, WebhookWrite, WriteResult
from wacanon.store.tables import events, webhook_journal


def writer_children(pid: int) -> list[int]:
    """The writer processes ``pid`` started."""
    out = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "wacanon.ingest.writer_process"],
        capture_output=True,
        text=True,
    ).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def fresh_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'writer.db'}"
    return emptied(request.getfixturevalue("postgres_server"))


def emptied(url: str) -> str:
    """``url``, its events and journal deleted (the shared PostgreSQL test database)."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(events.delete())
        connection.execute(webhook_journal.delete())
    engine.dispose()
    return url


@contextlib.contextmanager
def serving(
    directory: Path, url: str, settings: str = ""
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """A ``wacanon serve`` subprocess on ``url`` (``settings``: more top-level TOML lines):
    the process, its base URL and its log; terminated on the way out."""
    config = serve_config(directory, url)
    config.write_text(settings + config.read_text())
    port = _free_port()
    log = directory / "server.log"
    server = _start_server(config, port, log)
    try:
        yield server, f"http://127.0.0.1:{port}", log
    finally:
        server.terminate()
        server.wait(15)


def post(client: httpx.Client, message_id: str) -> httpx.Response:
    """One simulated webhook of one text message."""
    body = sim_body(sim_message(message_id))
    return client.post("/webhooks/simulated", content=body, headers=bearer())


def stored_ids(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        ids = [r[0] for r in connection.execute(sa.select(events.c.provider_message_id))]
    engine.dispose()
    return ids


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_writer_process_killed_mid_stream_loses_nothing_acknowledged(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = fresh_url(backend, request, tmp_path)
    with serving(tmp_path, url) as (server, base, log):
        (first,) = writer_children(server.pid)
        bodies = [sim_body(sim_message(f"W-{i:04d}")) for i in range(400)]
        answers: dict[bytes, int] = {}

        async def stream() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                for start in range(0, len(bodies), 20):
                    chunk = bodies[start : start + 20]
                    replies = await asyncio.gather(
                        *(
                            client.post(
                                f"{base}/webhooks/simulated",
                                content=b,
                                headers=bearer(),
                            )
                            for b in chunk
                        )
                    )
                    answers.update({b: r.status_code for b, r in zip(chunk, replies, strict=True)})
                    if start == 100:
                        os.kill(first, signal.SIGKILL)

        asyncio.run(stream())
        assert set(answers.values()) <= {200, 503}, set(answers.values())
        assert list(answers.values()).count(200) >= 100
        acknowledged = {
            orjson.loads(b)["events"][0]["id"] for b, status in answers.items() if status == 200
        }
        stored = stored_ids(url)
        assert acknowledged <= set(stored), f"{len(acknowledged - set(stored))} lost"
        assert len(stored) == len(set(stored))
        # Another writer took over: everything sent again is answered 200 and stored once.
        deadline = time.monotonic() + 15
        while not [p for p in writer_children(server.pid) if p != first and alive(p)]:
            assert time.monotonic() < deadline, "no new writer process"
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=30) as client:
            again = [
                client.post("/webhooks/simulated", content=b, headers=bearer()) for b in bodies
            ]
        assert {r.status_code for r in again} == {200}
        assert sorted(stored_ids(url)) == sorted({f"W-{i:04d}" for i in range(400)})
        assert "writer process exited; starting another" in log.read_text()


def test_the_writer_process_ends_with_its_server(tmp_path: Path) -> None:
    """Killed or stopped, a server leaves no writer behind; what it acknowledged is stored."""
    url = f"sqlite:///{tmp_path / 'ends.db'}"
    config = serve_config(tmp_path, url)
    port = _free_port()
    log = tmp_path / "server.log"
    for stop in (signal.SIGTERM, signal.SIGKILL):
        server = _start_server(config, port, log)
        (child,) = writer_children(server.pid)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for i in range(20):
                body = sim_body(sim_message(f"E-{stop.name}-{i}"))
                reply = client.post("/webhooks/simulated", content=body, headers=bearer())
                assert reply.status_code == 200
        server.send_signal(stop)
        server.wait(15)
        deadline = time.monotonic() + 15
        while alive(child):
            assert time.monotonic() < deadline, f"the writer outlived its server ({stop.name})"
            time.sleep(0.1)
    assert sorted(stored_ids(url)) == sorted(
        f"E-{s}-{i}" for s in ("SIGTERM", "SIGKILL") for i in range(20)
    )
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "starting another" not in text


def test_a_signal_to_the_whole_process_group_stops_it_gracefully(tmp_path: Path) -> None:
    """Ctrl-C, or a service manager's SIGTERM, reaches the writer too: it waits for its
    server to close its input, so webhooks in flight are answered, not failed."""
    url = f"sqlite:///{tmp_path / 'group.db'}"
    config = serve_config(tmp_path, url)
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("ab") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "wacanon", "serve", "--config", str(config),
             "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **PERSIST},
            cwd=tmp_path, start_new_session=True,
        )  # fmt: skip
    answers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.1)
        (child,) = writer_children(server.pid)

        async def stream() -> None:
            async with httpx.AsyncClient(timeout=30) as client:

                async def sender(n: int) -> None:
                    for i in range(40):
                        body = sim_body(sim_message(f"G-{n:02d}-{i:02d}"))
                        try:
                            reply = await client.post(
                                f"http://127.0.0.1:{port}/webhooks/simulated",
                                content=body,
                                headers=bearer(),
                            )
                        except httpx.HTTPError:
                            return  # refused once the server stopped listening
                        answers.append(reply.status_code)
                        if len(answers) == 150:
                            os.killpg(server.pid, signal.SIGINT)

                await asyncio.gather(*(sender(n) for n in range(16)))

        asyncio.run(stream())
        server.wait(20)
    finally:
        if server.poll() is None:
            server.kill()
    assert answers, "nothing was answered before the server stopped"
    assert set(answers) == {200}, sorted(set(answers))
    deadline = time.monotonic() + 10
    while alive(child):
        assert time.monotonic() < deadline, "the writer outlived its server"
        time.sleep(0.1)
    assert len(stored_ids(url)) >= len(answers)
    assert "writer process exited" not in log.read_text()


def test_frames_that_are_not_ours_are_refused_and_never_block_the_next() -> None:
    frames = Frames()
    frames.feed(frame(("done", [], True)) + struct.pack("!Q", 5) + b"nopkl")
    frames.feed(frame(("batch", (1, 0.1), True)))
    assert frames.next() == (True, ("done", [], True))
    with pytest.raises(FrameError, match="does not decode"):
        frames.next()
    assert list(frames.all()) == [("batch", (1, 0.1), True)]
    frames.feed(b"hello, world! this is not a frame")
    with pytest.raises(FrameError, match="a frame of"):
        frames.next()


def _writes() -> list[WebhookWrite]:
    """Jobs as the serving process hands them over: planned from real bodies (text with
    emoji and NUL characters, a batch of two), one resuming with keys stored before."""
    from tests.store.test_write_batch import STORE

    pipeline = Pipeline(Settings(default_shopper_id="shop-1"), lambda _: STORE, Metrics())
    now = datetime.now(UTC)
    writes = []
    for n, body in enumerate(
        [
            sim_body(sim_message("m1", text="Oi! Tem no 38? 👟 \u0000 ok")),
            sim_body(sim_message("m2", text="ação"), sim_message("m3", text="🙂")),
            b'{"not": "a simulated webhook"',
        ]
    ):
        received = Received("simulated", body, f"c{n}", now, n % 2 == 0, None, n == 1)
        writes.append(pipeline.plan(received).write)
    writes[1].resumes = True
    writes[1].stored_before = {"k1", "k2"}
    writes[1].rows_before = 2
    writes[2].dead_letter = DeadLetter(kind="invalid_json", error="bad \x00 JSON")
    return writes


def _one(data: bytes) -> tuple[bytes, Any]:
    frames = Frames()
    frames.feed(data)
    ((message),) = list(frames.all())
    return data[8:9], message


def test_jobs_and_answers_cross_as_messagepack_and_arrive_as_they_left() -> None:
    """Each webhook's job and answer are MessagePack (pickling them cost the event loop
    a tenth of its time), and come out equal: times (UTC), bytes, sets, None and NULs."""
    writes = _writes()
    assert any(w.events for w in writes)
    items = list(enumerate(writes, 1))
    codec, message = _one(jobs_frame(items))
    assert codec == b"j"
    assert message == ("jobs", items)
    row = message[1][0][1].events[0]
    assert row["occurred_at"] == writes[0].events[0]["occurred_at"]
    assert row["occurred_at"].utcoffset() is not None
    answers: list[tuple[int, Any]] = [
        (1, WriteResult(new_keys={"a", "b"}, journaled=True)),
        (2, WriteResult(new_keys=set(), journaled=True, refused="value too long")),
    ]
    codec, message = _one(done_frame(answers, False))
    assert (codec, message) == (b"d", ("done", answers, False))


def _changed(change: Callable[[WebhookWrite], None]) -> WebhookWrite:
    write = _writes()[1]  # a batch of two: rows to change
    change(write)
    return write


#: What would not come back as it left through the typed MessagePack decoder: it would
#: refuse it (a bool for an int, an int for a bool) or return something else (a naive time
#: or a tuple: text, a list); or MessagePack refuses it (a lone surrogate, a huge int).
AWKWARD: dict[str, Callable[[WebhookWrite], None]] = {
    "naive receipt": lambda w: setattr(w.journal, "received_at", datetime(2026, 12, 1, 12)),
    "naive row time": lambda w: w.events[1].update(occurred_at=datetime(2026, 12, 1, 12)),
    "lone surrogate": lambda w: setattr(w.journal, "account_id", "acct-\ud800"),
    "a tuple in a row": lambda w: w.events[0].update(chat_id=("a", "b")),
    "an int over 64 bits": lambda w: w.events[0].update(routed_seq=1 << 70),
    "a bool for an int": lambda w: setattr(w.journal, "ignored", True),
    "an int for a bool": lambda w: setattr(w.journal, "signature_valid", 1),
    "bytearray body": lambda w: setattr(w.journal, "body", bytearray(w.journal.body)),
}


@pytest.mark.parametrize("change", AWKWARD.values(), ids=list(AWKWARD))
def test_what_messagepack_cannot_carry_exactly_goes_as_a_pickle(
    change: Callable[[WebhookWrite], None],
) -> None:
    write = _changed(change)
    codec, message = _one(jobs_frame([(7, write)]))
    assert (codec, message) == (b"p", ("jobs", [(7, write)]))


def test_spooled_and_failed_answers_go_as_pickles() -> None:
    answers: list[tuple[int, Any]] = [
        (1, WriteResult(new_keys={"a"}, journaled=True)),
        (2, Spooled()),
        (3, Failed("the writer process exited")),
    ]
    codec, message = _one(done_frame(answers, True))
    assert (codec, message) == (b"p", ("done", answers, True))


def unchecked_jobs_frame(items: list[tuple[int, Any]]) -> bytes:
    """A MessagePack jobs frame of whatever ``items`` hold: what ``jobs_frame`` never sends."""
    return writer_process._framed(b"j", msgspec.msgpack.encode(items))


def test_a_job_that_does_not_decode_leaves_the_others_of_its_frame_readable() -> None:
    good = _writes()[0]
    frames = Frames()
    frames.feed(unchecked_jobs_frame([(1, good), (2, {"journal": "not a journal row"}), (3, good)]))
    kind, jobs = frames.next()[1]
    assert kind == "jobs"
    assert [key for key, _ in jobs] == [1, 2, 3]
    assert jobs[0][1] == jobs[2][1] == good
    assert isinstance(jobs[1][1], UnreadableJob)
    assert "journal" in jobs[1][1].reason


def test_the_writer_process_answers_an_unreadable_job_503_and_writes_the_rest(
    tmp_path: Path,
) -> None:
    """A real writer process handed a frame with a job it cannot read: that one is
    answered failed, the others of the frame are stored, and the process lives on."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = Settings(database_url=url, spool_path=str(tmp_path / "spool"))
    child = writer_process._Child(settings, {}, True)
    try:
        good = [w for w in _writes() if w.events][:2]
        jobs = unchecked_jobs_frame([(1, good[0]), (2, {"journal": 5}), (3, good[1])])
        os.write(child.jobs, bytes(child.unsent) + jobs)
        answers: dict[int, Any] = {}
        deadline = time.monotonic() + 20
        while len(answers) < 3:
            assert time.monotonic() < deadline, f"answers so far: {answers}"
            ready, _, _ = select.select([child.answers], [], [], 1)
            if ready:
                child.frames.feed(os.read(child.answers, 1 << 16))
                for kind, payload, _ in child.frames.all():
                    if kind == "done":
                        answers.update(payload)
        assert isinstance(answers[2], Failed)
        assert "could not be read" in answers[2].reason
        assert all(isinstance(answers[k], WriteResult) for k in (1, 3))
        assert child.process.poll() is None
    finally:
        child.close()
        child.process.wait(20)
    assert sorted(stored_ids(url)) == sorted(
        row["provider_message_id"] for w in good for row in w.events
    )


def test_commits_are_counted_by_the_server_and_a_thread_writer_stays_available(
    tmp_path: Path,
) -> None:
    for process in (True, False):
        directory = tmp_path / str(process)
        directory.mkdir()
        url = f"sqlite:///{directory / 'metrics.db'}"
        setting = f"writer_process = {str(process).lower()}\n"
        with serving(directory, url, setting) as (server, base, _):
            assert bool(writer_children(server.pid)) is process
            with httpx.Client(base_url=base, timeout=30) as client:
                for i in range(30):
                    assert post(client, f"M-{i}").json()["events"] == 1
                metrics = client.get("/metrics").text
        committed = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("wacanon_commit_batch_webhooks_sum")
        )
        assert committed == 30, (process, committed)


def test_webhooks_wait_while_the_writer_is_replaced_and_ready_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'held.db'}"
    with serving(tmp_path, url) as (server, base, _):
        (first,) = writer_children(server.pid)
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/ready").status_code == 200
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while client.get("/ready").status_code == 200:  # the server noticed
                assert time.monotonic() < deadline, "/ready never said the writer was gone"
                time.sleep(0.01)
            assert client.get("/ready").json() == {"status": "not ready"}
            replies = [post(client, f"H-{i}") for i in range(5)]
            assert [r.status_code for r in replies] == [200] * 5
            assert client.get("/ready").status_code == 200
        assert sorted(stored_ids(url)) == sorted(f"H-{i}" for i in range(5))


def test_redeliveries_over_two_servers_on_postgresql_store_each_fact_once(
    postgres_server: str, tmp_path: Path
) -> None:
    """The race that matters in production: the same facts delivered again and again,
    at once, to two ``wacanon serve`` processes on one PostgreSQL, each committing through
    its own writer process — each fact stored once, every other delivery a duplicate."""
    url = emptied(postgres_server)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bodies = [sim_body(sim_message(f"R-{i:03d}")) for i in range(100)] * 10
    random.Random(11).shuffle(bodies)
    with (
        serving(tmp_path / "a", url) as (first, one, _),
        serving(tmp_path / "b", url) as (
            second,
            two,
            _,
        ),
    ):
        assert writer_children(first.pid)
        assert writer_children(second.pid)

        async def deliver() -> list[httpx.Response]:
            gate = asyncio.Semaphore(40)
            async with httpx.AsyncClient(timeout=60) as client:

                async def one_delivery(i: int, body: bytes) -> httpx.Response:
                    async with gate:
                        base = (one, two)[i % 2]
                        return await client.post(
                            f"{base}/webhooks/simulated", content=body, headers=bearer()
                        )

                return await asyncio.gather(*(one_delivery(i, b) for i, b in enumerate(bodies)))

        answers = asyncio.run(deliver())
    assert {a.status_code for a in answers} == {200}
    replies = [a.json() for a in answers]
    assert sum(r["events"] for r in replies) == 100
    assert sum(r["duplicates"] for r in replies) == 900
    assert sorted(stored_ids(url)) == [f"R-{i:03d}" for i in range(100)]
    engine = create_engine(url)
    with engine.connect() as connection:
        new, duplicates = connection.execute(
            sa.select(
                sa.func.sum(webhook_journal.c.events_new), sa.func.sum(webhook_journal.c.duplicates)
            )
        ).one()
    engine.dispose()
    assert (new, duplicates) == (100, 900)


def test_a_stuck_writer_is_reported_then_replaced(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that owes answers and says nothing (stopped here; stuck on a lock in the
    field): ``/ready`` says so, and past the second bound it is killed and replaced. The
    webhook it held is answered 503 (not acknowledged), and stored once when sent again."""
    monkeypatch.setattr(writer_process, "STALL_REPORT_SECONDS", 1.0)
    monkeypatch.setattr(writer_process, "STALL_KILL_SECONDS", 3.0)
    monkeypatch.setattr(writer_process, "WATCH_SECONDS", 0.1)
    server = Server(database_url, tmp_path, writer_process=True)
    try:
        writer = server.server.config.app.app.state.service.writer
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert post(client, "S-1").status_code == 200
            assert writer.problem() is None
            stuck = writer._child.process.pid
            os.kill(stuck, signal.SIGSTOP)
            try:
                waiting: list[httpx.Response] = []
                sender = threading.Thread(target=lambda: waiting.append(post(client, "S-2")))
                sender.start()
                time.sleep(0.5)
                assert client.get("/ready").status_code == 200  # not silent long yet
                deadline = time.monotonic() + 5
                while client.get("/ready").status_code == 200:
                    assert time.monotonic() < deadline, "/ready never reported the stuck writer"
                    time.sleep(0.05)
                assert "has not answered" in (writer.problem() or "")
                assert sender.is_alive()  # still waiting: nothing was acknowledged
                sender.join(10)
                assert [r.status_code for r in waiting] == [503]
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(stuck, signal.SIGCONT)
            deadline = time.monotonic() + 10
            while writer._child is None or writer._child.process.pid == stuck:
                assert time.monotonic() < deadline, "no new writer process"
                time.sleep(0.05)
            assert not alive(stuck)
            assert post(client, "S-2").status_code == 200
            assert client.get("/ready").status_code == 200
        assert sorted(stored_ids(database_url)) == ["S-1", "S-2"]
    finally:
        server.stop()


def test_a_busy_writer_says_so_once_a_second_and_a_stuck_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The child's beat: a frame each second in which its writer moved on, none while it
    does not — what the serving process tells a long turn from a stuck writer by."""
    monkeypatch.setattr(writer_process, "BEAT_SECONDS", 0.05)
    read, write = os.pipe()
    os.set_blocking(read, False)

    class Writer:
        progress = 0
        database_up = True

    busy = Writer()
    outbox = writer_process._Outbox(write, lambda: True)
    threading.Thread(target=writer_process._beat, args=(busy, outbox), daemon=True).start()

    def frames_within(seconds: float) -> list[Any]:
        time.sleep(seconds)
        frames = Frames()
        with contextlib.suppress(BlockingIOError):
            frames.feed(os.read(read, 1 << 16))
        return list(frames.all())

    try:
        assert frames_within(0.3) == []  # idle: nothing moved, nothing said
        for _ in range(6):
            busy.progress += 1
            time.sleep(0.06)
        beats = frames_within(0.1)
        assert len(beats) >= 3
        assert all(kind == "progress" for kind, _, _ in beats)
        assert frames_within(0.3) == []  # stuck again: silent
    finally:
        os.close(read)
        os.close(write)

"""A lock held elsewhere on the tables the writer writes: webhooks go to the spool within
seconds (acknowledged) and drain when the lock is gone, instead of each waiting 30 s for
a 503 — with the writer in the serving process and in a writer process."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tests.api.conftest import bearer, sim_body, sim_message
from tests.api.test_slow_clients import Server
from tests.conftest import _clean
from tests.store.test_write_batch import STORE, planned
from wacanon.config import Settings
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Received
from wacanon.ingest.spool import REJECTED_FILE, Spool, SpoolRecord
from wacanon.ingest.writer import DRAIN_CHUNK, GroupCommitWriter, Job, Spooled
from wacanon.store.database import create_engine, upgrade
from wacanon.store.repository import WebhookWrite
from wacanon.store.tables import events


@contextmanager
def write_lock(database_url: str, tables: str = "events") -> Iterator[None]:
    """Another connection holds the write lock (SQLite) or an exclusive lock on ``tables``
    (PostgreSQL, as ``VACUUM FULL`` or a migration would) until the block ends."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_engine(database_url)
    with engine.connect() as connection:
        connection.exec_driver_sql(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.rollback()
    engine.dispose()


def stored(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        ids = list(connection.execute(sa.select(events.c.provider_message_id)).scalars())
    engine.dispose()
    return ids


#: ``writer_lock_timeout_seconds`` of these tests' servers (the default is 5).
LOCK = 1.0

LOCKS = {
    "events": ("events", False),
    "events-writer-process": ("events", True),
    # The flags are read again on each new writer connection: that read must not wait.
    "events-and-flags-writer-process": ("events, flag_overrides", True),
}


@pytest.mark.parametrize(("tables", "writer_process"), LOCKS.values(), ids=list(LOCKS))
def test_webhooks_spool_while_a_lock_is_held_and_drain_after(
    database_url: str, tmp_path: Path, tables: str, writer_process: bool
) -> None:
    if "flag_overrides" in tables and database_url.startswith("sqlite"):
        pytest.skip("SQLite locks the whole file: the events case covers it")
    server = Server(
        database_url, tmp_path, writer_process=writer_process, writer_lock_timeout_seconds=LOCK
    )
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            body = sim_body(sim_message("L-0"))
            assert client.post("/webhooks/simulated", content=body, headers=bearer()).is_success
            replies: list[tuple[float, httpx.Response]] = []
            with write_lock(database_url, tables):
                for i in (1, 2):
                    started = time.monotonic()
                    body = sim_body(sim_message(f"L-{i}"))
                    reply = client.post("/webhooks/simulated", content=body, headers=bearer())
                    replies.append((time.monotonic() - started, reply))
                    # Past the writer's 1 s back-off: the next one meets a new connection.
                    time.sleep(1.5)
            assert [r.status_code for _, r in replies] == [200, 200]
            assert all(r.json().get("spooled") is True for _, r in replies)
            slowest = max(seconds for seconds, _ in replies)
            # One lock wait (the configured one, not the default 5 s), or two when a drain
            # attempt came first: far from the 30 s 503.
            assert slowest < 2 * LOCK + 2.5, f"{slowest:.1f} s for an answer"
        deadline = time.monotonic() + 30
        while sorted(stored(database_url)) != ["L-0", "L-1", "L-2"]:
            assert time.monotonic() < deadline, f"not drained: {sorted(stored(database_url))}"
            time.sleep(0.2)
    finally:
        server.stop()


def test_the_writers_lock_wait_stays_with_the_writer(tmp_path: Path) -> None:
    """After a lock timeout the writer drops its connection for good: a connection the
    pool hands out next has the usual 30 s busy timeout, not the writer's 5 s."""
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    server = Server(url, tmp_path, writer_lock_timeout_seconds=LOCK)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            with write_lock(url):
                reply = client.post(
                    "/webhooks/simulated", content=sim_body(sim_message("P-1")), headers=bearer()
                )
            assert reply.json().get("spooled") is True
        engine = server.server.config.app.app.state.service.engine
        for _ in range(3):  # whatever connection the pool hands out
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        server.stop()


def test_a_spool_waiting_out_a_lock_is_neither_rewritten_nor_lost(
    database_url: str, tmp_path: Path
) -> None:
    """The database answers but a lock held elsewhere refuses the drain's writes: the
    spooled file stays as it is (each attempt appended its chunk and the rest of the file
    to the spool again: the whole spool rewritten every few seconds for as long as the
    lock lasted), attempts come less and less often, and once the lock is gone
    everything drains, once."""
    engine = create_engine(database_url)
    upgrade(engine)
    pipeline = Pipeline(
        Settings(database_url=database_url, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    spool_dir = tmp_path / "spool"
    ids = [f"S-{i}" for i in range(DRAIN_CHUNK + 50)]  # a chunk, and the rest of the file
    earlier = Spool(spool_dir)  # a server that spooled them, then stopped
    earlier.append(
        [
            Received(
                "simulated", sim_body(sim_message(i)), f"c-{i}", datetime.now(UTC), True
            ).spool_record()
            for i in ids
        ]
    )
    earlier.close()

    def spool_files() -> set[tuple[str, int, int, int]]:
        """Each file's name, inode, size and last change: a file rewritten is another."""
        found = set()
        for p in spool_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):  # renamed or deleted meanwhile
                stat = p.stat()
                found.add((p.name, stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return found

    (original,) = spool_files()
    unplannable = "c-S-7"  # set aside once, not at each attempt

    def replan(record: SpoolRecord) -> tuple[WebhookWrite, object]:
        if record.correlation_id == unplannable:
            raise ValueError("cannot be planned")
        return pipeline.replan(record)

    # A 1 s lock wait: attempts every ~2 s, not ~6.
    writer = GroupCommitWriter(engine, Spool(spool_dir), replan, lambda _: None, lock_seconds=1)
    try:
        with write_lock(database_url):
            writer.start()
            seen: set[tuple[str, int, int, int]] = set()
            deadline = time.monotonic() + 7
            while time.monotonic() < deadline:
                seen |= spool_files()
                time.sleep(0.02)
            assert writer.progress >= 2 * DRAIN_CHUNK, "the drain did not try twice"
            assert not (spool_dir / REJECTED_FILE).exists(), "set aside at each attempt"
            # The one file, claimed (renamed), never written again nor replaced.
            (claimed,) = spool_files()
            assert claimed[0].endswith(".draining")
            assert claimed[1:] == original[1:], "claimed file rewritten"
            assert seen <= {original, claimed}, f"spool rewritten: {seen}"
        deadline = time.monotonic() + 40  # the drain's back-off is under 16 s by now
        while len(stored(database_url)) < len(ids) - 1:
            assert time.monotonic() < deadline, f"{len(stored(database_url))} drained"
            time.sleep(0.2)
        assert sorted(stored(database_url)) == sorted(i for i in ids if i != "S-7")
        assert Spool(spool_dir).depth() == 0
        rejected = (spool_dir / REJECTED_FILE).read_bytes().splitlines()
        assert [orjson.loads(line)["correlation_id"] for line in rejected] == [unplannable]
    finally:
        writer.stop()
        engine.dispose()


def test_a_first_chunk_stored_in_part_is_not_replayed(postgres_server: str, tmp_path: Path) -> None:
    """A file's first chunk holds a record the database refuses (so it is written one by
    one) and, after it, one whose key another transaction holds: the records before are
    stored, that one waits out the lock, and those after it are not tried (each would
    wait as long). What was stored is not drained again when the lock is gone (the file
    was kept whole, and each attempt answered its stored records again as duplicates):
    each record is drained once."""
    _clean(postgres_server)
    engine = create_engine(postgres_server)
    pipeline = Pipeline(
        Settings(database_url=postgres_server, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    ids = [f"P-{i}" for i in range(5)]
    records = [
        Received(
            "simulated", sim_body(sim_message(i)), f"c-{i}", datetime.now(UTC), True
        ).spool_record()
        for i in ids
    ]

    def replan(record: SpoolRecord) -> tuple[WebhookWrite, object]:
        write, _ = pipeline.replan(record)
        if record.correlation_id == "c-P-2":
            write.events[0]["event_type"] = "x" * 100  # varchar(64): refused
        return write, record.correlation_id

    drained: list[tuple[object, int]] = []
    spool_dir = tmp_path / "spool"
    earlier = Spool(spool_dir)
    earlier.append(records)
    earlier.close()
    (held,) = replan(records[3])[0].events
    holder = engine.connect()
    holder.execute(events.insert(), [held])  # not committed: P-3's key is taken, for now
    writer = GroupCommitWriter(
        engine,
        Spool(spool_dir),
        replan,
        lambda stored: drained.extend((c, len(r.new_keys)) for c, r in stored),
        lock_seconds=1,
    )
    try:
        writer.start()
        deadline = time.monotonic() + 20
        while sorted(stored(postgres_server)) != ["P-0", "P-1"]:
            assert time.monotonic() < deadline, f"stored: {stored(postgres_server)}"
            time.sleep(0.1)
        time.sleep(3)  # attempts while the key is held
        assert sorted(stored(postgres_server)) == ["P-0", "P-1"]  # P-4 not tried meanwhile
        holder.rollback()
        holder.close()
        deadline = time.monotonic() + 30
        while Spool(spool_dir).depth() or len(stored(postgres_server)) < 4:
            assert time.monotonic() < deadline, f"stored: {stored(postgres_server)}"
            time.sleep(0.1)
    finally:
        writer.stop()
        engine.dispose()
    assert sorted(stored(postgres_server)) == ["P-0", "P-1", "P-3", "P-4"]
    assert sorted(drained) == [("c-P-0", 1), ("c-P-1", 1), ("c-P-2", 0), ("c-P-3", 1), ("c-P-4", 1)]


def test_a_lock_wait_that_ends_in_the_spool_counts_as_the_writer_moving_on(
    tmp_path: Path,
) -> None:
    """A statement that waited out a lock and failed is a step: the writer process's beat
    tells its server the writer moved on, so a drain attempt's wait followed by a live
    batch's is two silences of one wait each, never one long enough (10 s at the
    default 5 s wait) to have the writer reported stuck."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = create_engine(url)
    upgrade(engine)
    pipeline = Pipeline(
        Settings(database_url=url, default_shopper_id="s"), lambda _: STORE, Metrics()
    )
    plan = planned(pipeline, "M-1")
    outcomes: list[object] = []
    spool = Spool(tmp_path / "spool")
    writer = GroupCommitWriter(engine, spool, pipeline.replan, lambda _: None, lock_seconds=0.3)
    try:
        with write_lock(url):
            writer.start()
            before = writer.progress
            writer.enqueue([Job(plan.write, plan.received, outcomes.append)])
            deadline = time.monotonic() + 10
            while not outcomes:
                assert time.monotonic() < deadline, "no answer while the lock was held"
                time.sleep(0.02)
            assert isinstance(outcomes[0], Spooled)
            assert writer.progress > before, "a failed lock wait did not count as a step"
    finally:
        writer.stop()
        spool.close()
        engine.dispose()

"""A lock held elsewhere on the tables the writer writes: webhooks go to the spool within
seconds (acknowledged) and drain when the lock is gone, instead of each waiting 30 s for
a 503 — with the writer in the serving process and in a writer process."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.api.conftest import bearer, sim_body, sim_message
from tests.api.test_slow_clients import Server
from wacanon.store.database import WRITER_LOCK_SECONDS, create_engine
from wacanon.store.tables import events


@contextmanager
def write_lock(database_url: str) -> Iterator[None]:
    """Another connection holds the write lock (SQLite) or an exclusive lock on the events
    table (PostgreSQL, as ``VACUUM FULL`` or a migration would) until the block ends."""
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
        connection.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
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


@pytest.mark.parametrize("writer_process", [False, True], ids=["writer-thread", "writer-process"])
def test_webhooks_spool_while_a_lock_is_held_and_drain_after(
    database_url: str, tmp_path: Path, writer_process: bool
) -> None:
    server = Server(database_url, tmp_path, writer_process=writer_process)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            body = sim_body(sim_message("L-0"))
            assert client.post("/webhooks/simulated", content=body, headers=bearer()).is_success
            replies: list[tuple[float, httpx.Response]] = []

            def send(i: int) -> None:
                started = time.monotonic()
                body = sim_body(sim_message(f"L-{i}"))
                reply = client.post("/webhooks/simulated", content=body, headers=bearer())
                replies.append((time.monotonic() - started, reply))

            with write_lock(database_url):
                senders = [threading.Thread(target=send, args=(i,)) for i in (1, 2, 3)]
                for sender in senders:
                    sender.start()
                for sender in senders:
                    sender.join(40)
            assert [r.status_code for _, r in replies] == [200, 200, 200]
            assert all(r.json().get("spooled") is True for _, r in replies)
            slowest = max(seconds for seconds, _ in replies)
            assert slowest < WRITER_LOCK_SECONDS + 5, f"{slowest:.1f} s for an answer"
        deadline = time.monotonic() + 30
        while sorted(stored(database_url)) != ["L-0", "L-1", "L-2", "L-3"]:
            assert time.monotonic() < deadline, f"not drained: {sorted(stored(database_url))}"
            time.sleep(0.2)
    finally:
        server.stop()

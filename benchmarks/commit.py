"""What the writer's two halves cost, measured alone: handing a job to the writer
process, and committing a batch on SQLite.

* The hand-over: one planned Cloud API text webhook framed as the serving process frames
  it (``writer_process.jobs_frame``, MessagePack) and decoded as the child decodes it,
  against the pickle it used to be (``writer_process.frame``), in the same run.
* The commit: batches of realistic webhooks written as the writer writes them
  (``repository.write_batch`` on a connection set up by ``prepare_writer``, WAL,
  ``synchronous=FULL``) and committed, µs of wall time per webhook by batch size. The
  same run measures the baseline: raw ``sqlite3`` inserting rows of the same size into a
  table with no index but its key, same journal mode and durability, batch for batch;
  and, for diagnosis only, wacanon with ``synchronous=OFF`` (what the fsync costs).

    python benchmarks/commit.py [--batches 300] [--runs 3]

Figures are medians of ``--runs``; compare ratios, not µs, across machines
(docs/operations.md, "Capacity").
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from normalize import cloud_text

from wacanon.config import Settings
from wacanon.flags import ShopperFlags
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Received
from wacanon.ingest.writer_process import Frames, frame, jobs_frame
from wacanon.store.database import create_engine, prepare_writer, upgrade
from wacanon.store.repository import WebhookWrite, write_batch

ACCOUNT = "106540352242922"  # cloud_text's phone_number_id
STORE = ShopperFlags(
    canonical=True, shadow=False, routing=False, group_routing=False, assignment_policy="default"
)
BATCH_SIZES = (1, 7, 16, 32)


def planner() -> Callable[[int], WebhookWrite]:
    settings = Settings(
        accounts=[{"provider": "cloud_api", "account_id": ACCOUNT, "shopper_id": "shop-1"}]
    )
    pipeline = Pipeline(settings, lambda _: STORE, Metrics())

    def plan(i: int) -> WebhookWrite:
        body = cloud_text(i)
        received = Received("cloud_api", body, os.urandom(16).hex(), datetime.now(UTC), False)
        return pipeline.plan(received).write

    return plan


def handover(plan: Callable[[int], WebhookWrite]) -> dict[str, float]:
    """µs per job: framing and decoding, as MessagePack and as the pickle before it."""
    items = [(1, plan(0))]

    def decode(data: bytes) -> object:
        frames = Frames()
        frames.feed(data)
        return frames.next()

    msgpack, pickled = jobs_frame(items), frame(("jobs", items))
    assert msgpack[8:9] == b"j", "the job did not go as MessagePack"
    figures = {}
    for name, work in (
        ("frame, MessagePack", lambda: jobs_frame(items)),
        ("frame, pickle", lambda: frame(("jobs", items))),
        ("decode, MessagePack", lambda: decode(msgpack)),
        ("decode, pickle", lambda: decode(pickled)),
    ):
        figures[name] = min(timeit.repeat(work, number=2000, repeat=5)) / 2000 * 1e6
    return figures


def wacanon_commits(
    directory: Path, plan: Callable[[int], WebhookWrite], size: int, batches: int, sync: str
) -> float:
    """µs of wall time per webhook: ``batches`` batches of ``size``, each committed."""
    url = f"sqlite:///{directory / f'wacanon-{size}-{sync}.db'}"
    engine = create_engine(url)
    upgrade(engine)
    work = [[plan(b * size + i) for i in range(size)] for b in range(batches)]
    with engine.connect() as connection:
        prepare_writer(connection)
        connection.exec_driver_sql(f"PRAGMA synchronous={sync}")
        connection.commit()
        started = time.perf_counter()
        for batch in work:
            with connection.begin():
                write_batch(connection, batch)
        seconds = time.perf_counter() - started
    engine.dispose()
    return seconds / (batches * size) * 1e6


def raw_commits(directory: Path, size: int, batches: int, row_bytes: int) -> float:
    """The baseline: rows of the same size, a table with only its key, WAL, FULL."""
    connection = sqlite3.connect(directory / f"raw-{size}.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    rows = [[(os.urandom(row_bytes),) for _ in range(size)] for _ in range(batches)]
    started = time.perf_counter()
    for batch in rows:
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO t (v) VALUES (?)", batch)
        connection.execute("COMMIT")
    seconds = time.perf_counter() - started
    connection.close()
    return seconds / (batches * size) * 1e6


def row_bytes(write: WebhookWrite) -> int:
    """About what one webhook stores: its raw body and its events' canonical JSON."""
    return len(write.journal.body) + sum(len(row["payload"]) for row in write.events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    plan = planner()

    print("hand-over of one Cloud API text webhook to the writer process, µs (best of 5)")
    figures = handover(plan)
    for name, us in figures.items():
        print(f"  {name:22s} {us:6.1f}")
    for step in ("frame", "decode"):
        ratio = figures[f"{step}, pickle"] / figures[f"{step}, MessagePack"]
        print(f"  {step}: MessagePack is {ratio:.1f}× as fast as the pickle")

    size_of_row = row_bytes(plan(0))
    print(
        f"\nSQLite commits, µs of wall time per webhook, median of {args.runs} runs of "
        f"{args.batches} batches (baseline: raw sqlite3, {size_of_row}-byte rows, no index)"
    )
    print(f"  {'batch':>5}  {'raw':>7}  {'wacanon':>8}  {'ratio':>6}  {'sync=OFF':>9}")
    for size in BATCH_SIZES:
        raw, full, off = [], [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="wacanon-commit-") as name:
                directory = Path(name)
                raw.append(raw_commits(directory, size, args.batches, size_of_row))
                full.append(wacanon_commits(directory, plan, size, args.batches, "FULL"))
                off.append(wacanon_commits(directory, plan, size, args.batches, "OFF"))
        r, f, o = (statistics.median(x) for x in (raw, full, off))
        print(f"  {size:>5}  {r:>7.0f}  {f:>8.0f}  {f / r:>5.1f}×  {o:>9.0f}")


if __name__ == "__main__":
    main()

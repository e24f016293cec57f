"""The service's own promises, around the writer: an answer always comes."""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import make_settings, sim_body, sim_message
from wacanon.api import service as service_module
from wacanon.api.service import Service
from wacanon.ingest.pipeline import Received
from wacanon.ingest.writer import Failed, Job
from wacanon.store.repository import WriteResult


def test_a_writer_that_never_answers_means_a_503_in_time_not_a_hung_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread is never started here, so nothing ever commits: after the persist
    timeout the request gets a failure (503), and the late answer, if any, is dropped."""
    monkeypatch.setattr(service_module, "PERSIST_TIMEOUT_SECONDS", 0.3)
    service = Service.build(make_settings(f"sqlite:///{tmp_path / 'w.db'}", tmp_path))
    received = Received(
        "simulated",
        sim_body(sim_message("m-1")),
        os.urandom(16).hex(),
        datetime.now(UTC),
        True,
    )
    plan = service.pipeline.plan(received)

    errors: list[dict[str, Any]] = []
    late: list[Job] = []

    async def persist() -> tuple[object, float]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: errors.append(context))
        started = loop.time()
        with service.arrival() as arrival:
            outcome = await service.persist(plan, received, arrival)
        waited = loop.time() - started
        # The writer answers late: the job the request handed over, answered from a thread
        # (as the writer thread would) once the request has already been told it failed.
        assert isinstance(outcome, Failed)
        while True:
            try:
                item = service.writer._queue.get_nowait()
            except queue.Empty:
                break
            late.extend(item if isinstance(item, list) else [item])

        def answer() -> None:
            for job in late:
                job.finish(WriteResult(new_keys=set(), journaled=True))

        answering = threading.Thread(target=answer)
        answering.start()
        answering.join(5)
        await asyncio.sleep(0.2)  # the loop delivers (and must drop) the late answer
        return outcome, waited

    outcome, waited = asyncio.run(persist())
    service.engine.dispose()
    assert isinstance(outcome, Failed)
    assert outcome.reason == "no durable outcome within 0.3 s"
    assert 0.25 < waited < 5
    (job,) = late
    assert job.write is plan.write
    assert job.finished
    assert errors == []  # no "Future already done" (InvalidStateError) or any other error


@pytest.mark.parametrize(
    ("url", "configured", "expected"),
    [("sqlite", None, 0.00005), ("sqlite", 0.002, 0.002), ("postgresql", None, 0.0005)],
)
def test_the_gil_switch_interval_is_chosen_by_database_unless_configured(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    url: str,
    configured: float | None,
    expected: float,
) -> None:
    database = (
        f"sqlite:///{tmp_path / 'w.db'}"
        if url == "sqlite"
        else request.getfixturevalue("postgres_server")
    )
    before = sys.getswitchinterval()
    settings = make_settings(database, tmp_path, gil_switch_interval_seconds=configured)
    service = Service.build(settings)
    service.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(expected)
    finally:
        service.stop()
        sys.setswitchinterval(before)


@pytest.mark.parametrize("value", [0, -1, 0.5])
def test_a_switch_interval_out_of_range_is_refused(tmp_path: Path, value: float) -> None:
    with pytest.raises(ValueError, match="gil_switch_interval_seconds"):
        make_settings(f"sqlite:///{tmp_path / 'w.db'}", tmp_path, gil_switch_interval_seconds=value)

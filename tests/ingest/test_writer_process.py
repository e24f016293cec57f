"""``wacanon serve`` commits in a writer process of its own: it may die, its parent may
die, and nothing acknowledged is lost either way."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tests.api.conftest import bearer, sim_body, sim_message
from tests.ingest.test_durability import _free_port, _start_server, serve_config
from wacanon.store.database import create_engine
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
    url: str = request.getfixturevalue("postgres_server")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(events.delete())
        connection.execute(webhook_journal.delete())
    engine.dispose()
    return url


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
    config = serve_config(tmp_path, url)
    port = _free_port()
    log = tmp_path / "server.log"
    server = _start_server(config, port, log)
    try:
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
                                f"http://127.0.0.1:{port}/webhooks/simulated",
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
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            again = [
                client.post("/webhooks/simulated", content=b, headers=bearer()) for b in bodies
            ]
        assert {r.status_code for r in again} == {200}
        assert sorted(stored_ids(url)) == sorted({f"W-{i:04d}" for i in range(400)})
        assert "writer process exited; starting another" in log.read_text()
    finally:
        server.terminate()
        server.wait(15)


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


def test_commits_are_counted_by_the_server_and_a_thread_writer_stays_available(
    tmp_path: Path,
) -> None:
    for process in (True, False):
        directory = tmp_path / str(process)
        directory.mkdir()
        url = f"sqlite:///{directory / 'metrics.db'}"
        config = serve_config(directory, url)
        setting = f"writer_process = {str(process).lower()}\n"
        config.write_text(setting + config.read_text())
        port = _free_port()
        server = _start_server(config, port, directory / "server.log")
        try:
            assert bool(writer_children(server.pid)) is process
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for i in range(30):
                    body = sim_body(sim_message(f"M-{i}"))
                    reply = client.post("/webhooks/simulated", content=body, headers=bearer())
                    assert reply.json()["events"] == 1
                metrics = client.get("/metrics").text
            committed = next(
                float(line.split()[1])
                for line in metrics.splitlines()
                if line.startswith("wacanon_commit_batch_webhooks_sum")
            )
            assert committed == 30, (process, committed)
        finally:
            server.terminate()
            server.wait(15)

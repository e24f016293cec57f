"""Nothing acknowledged is lost and nothing is stored twice: concurrency, outages, crashes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.api.conftest import (
    PERSIST,
    SIM_TOKEN,
    LiveServer,
    bearer,
    make_settings,
    sim_body,
    sim_message,
)
from tests.ingest.proxy import CuttableProxy
from wacanon.api.app import create_app
from wacanon.ingest import signals
from wacanon.store.database import create_engine
from wacanon.store.tables import events, webhook_journal


async def post_many(base: str, bodies: list[bytes], concurrency: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(body: bytes) -> httpx.Response:
            async with gate:
                return await client.post("/webhooks/simulated", content=body, headers=bearer())

        return await asyncio.gather(*(one(b) for b in bodies))


def scalar(url: str, query: Any) -> Any:
    engine = create_engine(url)
    with engine.connect() as connection:
        value = connection.execute(query).scalar_one()
    engine.dispose()
    return value


def test_concurrent_redeliveries_store_each_fact_once(postgres_server: str, tmp_path: Path) -> None:
    """100 distinct messages, each delivered 20 times by concurrent clients (PostgreSQL)."""
    url = postgres_server
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(events.delete())
        connection.execute(webhook_journal.delete())
    engine.dispose()
    stored: list[str] = []
    duplicates: list[str] = []

    def on_stored(sender: str, event: Any, **_: Any) -> None:
        stored.append(event.idempotency_key)

    def on_duplicate(sender: str, event: Any, **_: Any) -> None:
        duplicates.append(event.idempotency_key)

    signals.event_stored.connect(on_stored)
    signals.duplicate_received.connect(on_duplicate)
    server = LiveServer(create_app(make_settings(url, tmp_path), env=PERSIST))
    try:
        base = server.start()
        bodies = [sim_body(sim_message(f"CONC-{i:03d}")) for i in range(100)] * 20
        random.Random(7).shuffle(bodies)
        answers = asyncio.run(post_many(base, bodies, concurrency=40))
    finally:
        server.stop()
        signals.event_stored.disconnect(on_stored)
        signals.duplicate_received.disconnect(on_duplicate)
    assert {a.status_code for a in answers} == {200}
    replies = [a.json() for a in answers]
    assert sum(r["events"] for r in replies) == 100
    assert sum(r["duplicates"] for r in replies) == 1900
    assert scalar(url, sa.select(sa.func.count()).select_from(events)) == 100
    assert len(stored) == len(set(stored)) == 100
    assert len(duplicates) == 1900


def test_database_outage_spools_then_drains_without_loss(
    postgres_server: str, tmp_path: Path
) -> None:
    """The database goes away mid-stream and comes back: all acknowledged, none lost or doubled."""
    engine = create_engine(postgres_server)
    with engine.begin() as connection:
        connection.execute(events.delete())
        connection.execute(webhook_journal.delete())
    engine.dispose()
    target = sa.engine.make_url(postgres_server)
    proxy = CuttableProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.open()
    via_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    server = LiveServer(create_app(make_settings(via_proxy, tmp_path), env=PERSIST))
    try:
        base = server.start()
        batches = [
            [sim_body(sim_message(f"OUT-{b}-{i:03d}")) for i in range(150)] for b in range(3)
        ]
        first = asyncio.run(post_many(base, batches[0], concurrency=10))
        proxy.cut()
        during = asyncio.run(post_many(base, batches[1] + batches[0][:20], concurrency=10))
        assert any(r.json().get("spooled") for r in during), "nothing was spooled during the outage"
        proxy.open()
        after = asyncio.run(post_many(base, batches[2], concurrency=10))
        deadline = time.monotonic() + 30
        count_query = sa.select(sa.func.count()).select_from(events)
        while scalar(postgres_server, count_query) < 450 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.stop()
        proxy.cut()
    assert {r.status_code for r in first + during + after} == {200}
    assert scalar(postgres_server, sa.select(sa.func.count()).select_from(events)) == 450
    journal = sa.select(sa.func.count()).select_from(webhook_journal)
    assert scalar(postgres_server, journal) == 470
    assert not any((tmp_path / "spool").glob("*.draining"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_config(tmp_path: Path, url: str) -> Path:
    """A ``wacanon.toml`` for a ``wacanon serve`` subprocess: the simulated provider, every
    account owned by shop-1, the spool under ``tmp_path``."""
    config = tmp_path / "wacanon.toml"
    config.write_text(
        f'database_url = "{url}"\ndefault_shopper_id = "shop-1"\n'
        f'spool_path = "{tmp_path / "spool"}"\n[providers.simulated]\ntoken = "{SIM_TOKEN}"\n'
    )
    return config


def _start_server(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **PERSIST}
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wacanon",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=config.parent,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_stream_loses_no_acknowledged_webhook(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
    else:
        url = request.getfixturevalue("postgres_server")
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(events.delete())
            connection.execute(webhook_journal.delete())
        engine.dispose()
    config = serve_config(tmp_path, url)
    port = _free_port()
    log = tmp_path / "server.log"
    process = _start_server(config, port, log)
    bodies = [sim_body(sim_message(f"KILL-{i:04d}")) for i in range(600)]
    acknowledged: list[str] = []

    async def stream() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            for start in range(0, len(bodies), 20):
                chunk = bodies[start : start + 20]
                tasks = [
                    client.post(
                        f"http://127.0.0.1:{port}/webhooks/simulated", content=b, headers=bearer()
                    )
                    for b in chunk
                ]
                for body, outcome in zip(
                    chunk, await asyncio.gather(*tasks, return_exceptions=True), strict=True
                ):
                    if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                        acknowledged.append(body.decode())
                if start == 200:
                    process.send_signal(signal.SIGKILL)

    asyncio.run(stream())
    process.wait(10)
    assert 200 <= len(acknowledged) < 600
    restarted = _start_server(config, port, log)
    try:
        ids = {sim["events"][0]["id"] for sim in map(__import__("orjson").loads, acknowledged)}
        engine = create_engine(url)
        with engine.connect() as connection:
            stored = [r[0] for r in connection.execute(sa.select(events.c.provider_message_id))]
        engine.dispose()
        assert ids <= set(stored), f"{len(ids - set(stored))} acknowledged webhooks were lost"
        assert len(stored) == len(set(stored))
        again = asyncio.run(post_many(f"http://127.0.0.1:{port}", bodies, concurrency=10))
        assert {r.status_code for r in again} == {200}
        count = sa.select(sa.func.count()).select_from(events)
        assert scalar(url, count) == 600
    finally:
        restarted.terminate()
        restarted.wait(10)


def test_spool_drains_while_traffic_keeps_arriving(postgres_server: str, tmp_path: Path) -> None:
    """The drain must not wait for an idle moment that a busy shop never has."""
    engine = create_engine(postgres_server)
    with engine.begin() as connection:
        connection.execute(events.delete())
        connection.execute(webhook_journal.delete())
    engine.dispose()
    target = sa.engine.make_url(postgres_server)
    proxy = CuttableProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.open()
    via_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    server = LiveServer(create_app(make_settings(via_proxy, tmp_path), env=PERSIST))
    count = sa.select(sa.func.count()).select_from(events)
    try:
        base = server.start()
        asyncio.run(post_many(base, [sim_body(sim_message("WARM-UP"))], concurrency=1))
        proxy.cut()
        spooled = [sim_body(sim_message(f"SPOOL-{i:03d}")) for i in range(60)]
        during = asyncio.run(post_many(base, spooled, concurrency=5))
        assert all(r.json().get("spooled") for r in during)
        proxy.open()
        drained_under_load = False
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(200):  # a steady trickle, never idle for long
                body = sim_body(sim_message(f"LIVE-{i:03d}"))
                assert client.post("/webhooks/simulated", content=body, headers=bearer()).is_success
                time.sleep(0.05)
                if i % 10 == 9 and scalar(postgres_server, count) >= 61 + i + 1:
                    drained_under_load = True
                    break
    finally:
        server.stop()
        proxy.cut()
    assert drained_under_load, "the spool waited for the traffic to stop"

"""Data the database refuses never blocks anything: NUL characters, poison spool records,
and a server started while the database is away (PostgreSQL, through a cuttable proxy)."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import (
    EVOLUTION_KEY,
    PERSIST,
    LiveServer,
    bearer,
    bridge_signature,
    hub_signature,
    make_settings,
    sim_body,
    sim_message,
)
from tests.api.test_webhooks import rows
from tests.conftest import _clean
from tests.golden import FIXTURES
from tests.ingest.proxy import CuttableProxy
from tests.ingest.test_durability import (
    _free_port,
    _start_server,
    post_many,
    scalar,
    serve_config,
)
from wacanon.api.app import create_app
from wacanon.api.service import Service
from wacanon.ingest.pipeline import Pipeline, Plan, Received
from wacanon.ingest.spool import Spool, SpoolRecord
from wacanon.ingest.writer import GroupCommitWriter, Job, Outcome
from wacanon.store.database import create_engine
from wacanon.store.repository import WebhookWrite, WriteResult
from wacanon.store.tables import dead_letters, events, webhook_journal

COUNT_EVENTS = sa.select(sa.func.count()).select_from(events)
COUNT_JOURNAL = sa.select(sa.func.count()).select_from(webhook_journal)


def via_proxy(url: str) -> tuple[CuttableProxy, str]:
    target = sa.engine.make_url(url)
    proxy = CuttableProxy(target.host or "127.0.0.1", target.port or 5432)
    return proxy, target.set(port=proxy.port).render_as_string(hide_password=False)


def cloud_text(phone_number_id: str, message_id: str) -> bytes:
    """The Cloud API text fixture, for another phone number id and message id."""
    payload = orjson.loads((FIXTURES / "cloud_api" / "text_single.json").read_bytes())
    value = payload["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = phone_number_id
    value["messages"][0]["id"] = message_id
    return orjson.dumps(payload)


def wait_for(url: str, query: Any, expected: int, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    value = scalar(url, query)
    while value < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        value = scalar(url, query)
    return int(value)


def test_nul_characters_among_spooled_webhooks_drain_with_the_rest(
    postgres_server: str, tmp_path: Path
) -> None:
    """The reported outage: a NUL in an account id and in a message id, among 300 spooled."""
    _clean(postgres_server)
    proxy, url = via_proxy(postgres_server)
    proxy.open()
    server = LiveServer(create_app(make_settings(url, tmp_path), env=PERSIST))
    try:
        base = server.start()
        proxy.cut()
        bodies = [sim_body(sim_message(f"NUL-{i:03d}")) for i in range(298)]
        bodies.append(sim_body(sim_message("wamid.\u0000NUL")))
        answers = asyncio.run(post_many(base, bodies, concurrency=10))
        poison = cloud_text("111\u0000", "wamid.POISON")
        with httpx.Client(base_url=base, timeout=30) as client:
            answers.append(
                client.post("/webhooks/cloud_api", content=poison, headers=hub_signature(poison))
            )
        assert {a.status_code for a in answers} == {200}
        assert all(a.json().get("spooled") for a in answers)
        proxy.open()
        assert wait_for(postgres_server, COUNT_JOURNAL, 300) == 300
        assert wait_for(postgres_server, COUNT_EVENTS, 299) == 299
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 5  # the gauge is refreshed every second
            metrics = client.get("/metrics").text
            while "wacanon_spool_depth 0.0" not in metrics and time.monotonic() < deadline:
                time.sleep(0.2)
                metrics = client.get("/metrics").text
    finally:
        server.stop()
        proxy.cut()
    assert "wacanon_spool_depth 0.0" in metrics
    assert not [p for p in (tmp_path / "spool").glob("*.jsonl") if p.stat().st_size]
    assert not any((tmp_path / "spool").glob("*.draining"))
    engine = create_engine(postgres_server)
    with engine.connect() as connection:
        ids = {r[0] for r in connection.execute(sa.select(events.c.provider_message_id))}
        unowned = connection.execute(
            sa.select(webhook_journal.c.account_id, webhook_journal.c.outcome).where(
                webhook_journal.c.provider == "cloud_api"
            )
        ).one()
    engine.dispose()
    assert "wamid.\ufffdNUL" in ids
    assert tuple(unowned) == ("111\ufffd", "unknown_account")


def test_a_nul_in_a_message_id_is_stored_not_a_duplicate(
    make_client: Any, database_url: str
) -> None:
    client = make_client()
    body = sim_body(sim_message("SIM-\u0000-1"))
    first = client.post("/webhooks/simulated", content=body, headers=bearer()).json()
    again = client.post("/webhooks/simulated", content=body, headers=bearer()).json()
    assert (first["events"], first["duplicates"]) == (1, 0)
    assert (again["events"], again["duplicates"]) == (0, 1)
    assert scalar(database_url, COUNT_EVENTS) == 1
    outcomes = {r.outcome for r in rows(database_url, webhook_journal)}
    assert outcomes == {"stored"}


def test_nul_in_evolution_instance_and_baileys_session_is_stored(
    make_client: Any, database_url: str
) -> None:
    client = make_client(default_shopper_id="shop-9")
    evolution = orjson.dumps(
        {
            "event": "messages.upsert",
            "instance": "loja\u0000centro",
            "apikey": EVOLUTION_KEY,
            "data": {
                "key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": False, "id": "E1"},
                "message": {"conversation": "Oi"},
                "messageTimestamp": 1772366400,
            },
        }
    )
    answer = client.post(
        "/webhooks/evolution", content=evolution, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["events"] == 1
    baileys = orjson.dumps(
        {
            "session": "sess\u0000ion",
            "event": "messages.upsert",
            "data": {
                "type": "notify",
                "messages": [
                    {
                        "key": {
                            "remoteJid": "5511987654321@s.whatsapp.net",
                            "fromMe": False,
                            "id": "B1",
                        },
                        "message": {"conversation": "Oi"},
                        "messageTimestamp": 1772366400,
                    }
                ],
            },
        }
    )
    answer = client.post("/webhooks/baileys", content=baileys, headers=bridge_signature(baileys))
    assert answer.status_code == 200, answer.text
    assert scalar(database_url, COUNT_EVENTS) == 2


def test_a_spooled_record_the_database_refuses_becomes_a_dead_letter(
    postgres_server: str, tmp_path: Path
) -> None:
    """300 spooled webhooks, one of which PostgreSQL refuses for its data (a value too long
    for its column, and a journal value no driver can encode): 299 events, 300 journal rows,
    1 store_error dead letter, spool empty."""
    _clean(postgres_server)
    settings = make_settings(postgres_server, tmp_path)
    service = Service.build(settings, env=PERSIST)
    pipeline: Pipeline = service.pipeline

    def replan(record: SpoolRecord) -> tuple[WebhookWrite, object]:
        write, plan = pipeline.replan(record)
        if record.correlation_id == "poison":
            write.events[0]["event_type"] = "x" * 100  # varchar(64): refused
            write.journal.account_id = "acc\udc00"  # a lone surrogate: no driver encodes it
        return write, plan

    spool = Spool(tmp_path / "spool")
    records = [
        Received(
            "simulated",
            sim_body(sim_message(f"P-{i:03d}")),
            "poison" if i == 150 else f"c-{i:03d}",
            datetime.now(UTC),
            True,
        ).spool_record()
        for i in range(300)
    ]
    spool.append(records)
    spool.close()
    engine = create_engine(postgres_server)
    writer = GroupCommitWriter(engine, Spool(tmp_path / "spool"), replan, pipeline.drained)
    writer.start()
    try:
        assert wait_for(postgres_server, COUNT_JOURNAL, 300) == 300
        assert scalar(postgres_server, COUNT_EVENTS) == 299
        deadline = time.monotonic() + 10
        while spool.has_records() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not spool.has_records()
    finally:
        writer.stop()
    with engine.connect() as connection:
        (letter,) = connection.execute(sa.select(dead_letters)).all()
        journal = connection.execute(
            sa.select(webhook_journal).where(webhook_journal.c.correlation_id == "poison")
        ).one()
    engine.dispose()
    service.engine.dispose()
    assert (letter.kind, letter.correlation_id) == ("store_error", "poison")
    assert letter.body == sim_body(sim_message("P-150"))
    assert journal.outcome == "store_error"


def test_a_live_webhook_the_database_refuses_is_a_dead_letter_not_a_duplicate(
    postgres_server: str, tmp_path: Path
) -> None:
    _clean(postgres_server)
    service = Service.build(make_settings(postgres_server, tmp_path), env=PERSIST)
    service.start()
    try:
        received = Received(
            "simulated",
            sim_body(sim_message("LIVE-1")),
            "refused-live",
            datetime.now(UTC),
            True,
        )
        plan: Plan = service.pipeline.plan(received)
        plan.write.events[0]["event_type"] = "x" * 100
        outcomes: list[Outcome] = []
        done = threading.Event()

        def collect(outcome: Outcome) -> None:
            outcomes.append(outcome)
            done.set()

        service.writer.expect()
        service.writer.submit(Job(plan.write, received, collect))
        assert done.wait(10)
        (result,) = outcomes
        assert isinstance(result, WriteResult)
        assert result.refused is not None
        answer = plan.reply(result)
        service.pipeline.committed(plan, result)
        assert (answer["events"], answer["duplicates"], answer["dead_letter"]) == (0, 0, True)
        assert service.metrics.duplicates.labels("simulated")._value.get() == 0
        assert service.metrics.store_errors.labels("simulated")._value.get() == 1
    finally:
        service.stop()
    assert [(r.outcome,) for r in rows(postgres_server, webhook_journal)] == [("store_error",)]


def test_serve_restarted_during_an_outage_spools_then_drains(
    postgres_server: str, tmp_path: Path
) -> None:
    """`wacanon serve` crashed while PostgreSQL was away: it starts anyway and spools."""
    _clean(postgres_server)
    proxy, url = via_proxy(postgres_server)
    proxy.open()
    config = serve_config(tmp_path, url)
    port = _free_port()
    log = tmp_path / "server.log"
    first = _start_server(config, port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        ok = asyncio.run(post_many(base, [sim_body(sim_message("BEFORE"))], concurrency=1))
        assert ok[0].json()["events"] == 1
        proxy.cut()
        first.kill()
        first.wait(10)
        second = _start_server(config, port, log)  # raises if it does not come up
        try:
            bodies = [sim_body(sim_message(f"DURING-{i:02d}")) for i in range(20)]
            during = asyncio.run(post_many(base, bodies, concurrency=4))
            assert {r.status_code for r in during} == {200}
            assert all(r.json().get("spooled") for r in during)
            ready = httpx.get(f"{base}/ready", timeout=10)
            assert ready.status_code == 503
            assert ready.json() == {"status": "not ready"}
            proxy.open()
            assert wait_for(postgres_server, COUNT_EVENTS, 21) == 21
        finally:
            second.terminate()
            second.wait(10)
    finally:
        proxy.cut()
    assert "spooled until it answers" in log.read_text()


def test_a_database_that_refuses_every_write_keeps_the_spool(
    postgres_server: str, tmp_path: Path
) -> None:
    """Read-only after a failover (not the data's fault): nothing is set aside, the spool
    waits, and drains once the database takes writes again."""
    _clean(postgres_server)
    name = sa.engine.make_url(postgres_server).database
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    service = Service.build(make_settings(postgres_server, tmp_path), env=PERSIST)
    spool = Spool(tmp_path / "spool")
    spool.append(
        [
            Received(
                "simulated", sim_body(sim_message(f"RO-{i}")), f"ro-{i}", datetime.now(UTC), True
            ).spool_record()
            for i in range(20)
        ]
    )
    spool.close()
    engine = create_engine(postgres_server)
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
        )
    writer = GroupCommitWriter(
        engine, Spool(tmp_path / "spool"), service.pipeline.replan, service.pipeline.drained
    )
    writer.start()
    try:
        time.sleep(3)
        assert not (tmp_path / "spool" / "rejected.jsonl.rejected").exists()
        assert spool.depth() == 20
        assert scalar(postgres_server, COUNT_EVENTS) == 0
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{name}" RESET default_transaction_read_only'
            )
        engine.dispose()  # pooled connections keep the setting they were opened with
        assert wait_for(postgres_server, COUNT_EVENTS, 20) == 20
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{name}" RESET default_transaction_read_only'
            )
        writer.stop()
        engine.dispose()
        admin.dispose()
        service.engine.dispose()
    assert not (tmp_path / "spool" / "rejected.jsonl.rejected").exists()


def stored_counts(ports: list[int]) -> list[float]:
    """Each server's ``wacanon_webhooks_total{provider="simulated",outcome="stored"}``."""
    found = []
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        found.append(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "wacanon_webhooks_total"
                and sample.labels == {"provider": "simulated", "outcome": "stored"}
            )
        )
    return found


def test_two_servers_started_during_an_outage_spool_and_drain_once(
    postgres_server: str, tmp_path: Path
) -> None:
    """Two `wacanon serve` processes, one spool directory, PostgreSQL away at start-up:
    both accept, and when it answers every webhook is stored exactly once."""
    _clean(postgres_server)
    proxy, url = via_proxy(postgres_server)  # not opened: refused from the start
    config = serve_config(tmp_path, url)
    ports = [_free_port(), _free_port()]
    servers = [_start_server(config, port, tmp_path / f"server-{port}.log") for port in ports]
    try:
        for n, port in enumerate(ports):
            bodies = [sim_body(sim_message(f"TWO-{n}-{i:02d}")) for i in range(30)]
            bodies += [sim_body(sim_message(f"TWO-BOTH-{i:02d}")) for i in range(10)]
            answers = asyncio.run(post_many(f"http://127.0.0.1:{port}", bodies, concurrency=4))
            assert {a.status_code for a in answers} == {200}
            assert all(a.json().get("spooled") for a in answers)
        proxy.open()
        assert wait_for(postgres_server, COUNT_EVENTS, 70, seconds=40) == 70
        time.sleep(1.5)  # any second replay would show up now
        assert scalar(postgres_server, COUNT_EVENTS) == 70
        assert scalar(postgres_server, COUNT_JOURNAL) == 80
        stored_webhooks = sum(
            1 for r in rows(postgres_server, webhook_journal) if r.outcome == "stored"
        )
        assert stored_webhooks == 80
        # A second replay adds no row (unique keys), but the drain counts what it stores:
        # both servers together must have counted each stored webhook exactly once.
        counted = stored_counts(ports)
        deadline = time.monotonic() + 5
        while sum(counted) < stored_webhooks and time.monotonic() < deadline:
            time.sleep(0.2)
            counted = stored_counts(ports)
        assert sum(counted) == stored_webhooks, counted
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
        proxy.cut()
    assert not any((tmp_path / "spool").glob("*.draining"))
    assert not (tmp_path / "spool" / "rejected.jsonl.rejected").exists()


def test_over_http_a_webhook_the_database_refuses_answers_dead_letter_and_the_next_is_stored(
    postgres_server: str, tmp_path: Path
) -> None:
    """End to end, with the database itself refusing real data (a CHECK constraint on the
    scratch database): the reply says ``dead_letter``, the raw body is kept, the refusal
    is counted, and the webhook after it is stored as usual."""
    _clean(postgres_server)
    engine = create_engine(postgres_server)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "ALTER TABLE events ADD CONSTRAINT t_poison "
            "CHECK (provider_message_id IS DISTINCT FROM 'POISON-1')"
        )
    server = LiveServer(create_app(make_settings(postgres_server, tmp_path), env=PERSIST))
    try:
        with httpx.Client(base_url=server.start(), timeout=30) as client:
            poison = sim_body(sim_message("POISON-1"))
            refused = client.post("/webhooks/simulated", content=poison, headers=bearer())
            fine = client.post(
                "/webhooks/simulated", content=sim_body(sim_message("FINE-1")), headers=bearer()
            )
            metrics = client.get("/metrics").text
        assert refused.status_code == 200
        answer = refused.json()
        assert (answer["events"], answer["duplicates"], answer["dead_letter"]) == (0, 0, True)
        assert fine.status_code == 200
        assert (fine.json()["events"], fine.json().get("dead_letter")) == (1, None)
        assert 'wacanon_store_errors_total{provider="simulated"} 1.0' in metrics
        letters = rows(postgres_server, dead_letters)
        assert [(r.kind, r.body) for r in letters] == [("store_error", poison)]
        outcomes = sorted(r.outcome for r in rows(postgres_server, webhook_journal))
        assert outcomes == ["store_error", "stored"]
        assert scalar(postgres_server, COUNT_EVENTS) == 1
    finally:
        server.stop()
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE events DROP CONSTRAINT IF EXISTS t_poison")
        engine.dispose()


def test_a_message_id_too_large_for_an_index_is_a_dead_letter_not_an_outage(
    postgres_server: str, tmp_path: Path
) -> None:
    """A Cloud API message id of 8,000 random characters (a legal body): PostgreSQL cannot
    index it (``index row size exceeds maximum``, raised as an OperationalError). It was
    taken for an outage: the webhook answered ``spooled``, the database marked down for
    every webhook, and the drain refused again every second, for ever. Now: a dead letter
    with its raw body, and the next webhook stored as usual."""
    _clean(postgres_server)
    settings = make_settings(postgres_server, tmp_path)
    huge = cloud_text("106540352242922", "wamid." + secrets.token_urlsafe(6000))
    server = LiveServer(create_app(settings, env=PERSIST))
    try:
        with httpx.Client(base_url=server.start(), timeout=30) as client:
            refused = client.post("/webhooks/cloud_api", content=huge, headers=hub_signature(huge))
            fine_body = cloud_text("106540352242922", "wamid.FINE-1")
            fine = client.post(
                "/webhooks/cloud_api", content=fine_body, headers=hub_signature(fine_body)
            )
        assert refused.status_code == 200
        answer = refused.json()
        assert (answer["events"], answer.get("spooled"), answer["dead_letter"]) == (0, None, True)
        assert (fine.status_code, fine.json()["events"], fine.json().get("spooled")) == (
            200,
            1,
            None,
        )
        assert [(r.kind, r.body) for r in rows(postgres_server, dead_letters)] == [
            ("store_error", huge)
        ]
        assert scalar(postgres_server, COUNT_EVENTS) == 1
        assert not any((tmp_path / "spool").glob("*"))
    finally:
        server.stop()

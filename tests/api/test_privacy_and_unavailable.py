"""No personal data at INFO (LGPD); and nothing stored anywhere means 503, so providers retry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog

from tests.api.conftest import LiveServer, bearer, make_settings, sim_body, sim_message
from tests.ingest.proxy import CuttableProxy
from wacanon import logging as wlogging
from wacanon.api.app import create_app
from wacanon.api.service import READY_TIMEOUT_SECONDS


@pytest.fixture
def info_logs() -> Iterator[None]:
    wlogging.configure("INFO")
    yield
    structlog.reset_defaults()


def test_info_logs_carry_ids_not_phones_names_or_texts(
    make_client: Any, capfd: pytest.CaptureFixture[str], info_logs: None
) -> None:
    client = make_client(env={})  # shadow mode: every event is logged
    body = sim_body(
        {
            "type": "message",
            "id": "SIM-PII",
            "from": "+55 11 98765-4321",
            "name": "Joana Prado",
            "text": "meu CPF é 123.456.789-00",
            "timestamp": 1772366400,
        }
    )
    answer = client.post("/webhooks/simulated", content=body, headers=bearer())
    assert answer.status_code == 200
    client.post("/webhooks/simulated", content=body, headers={"Authorization": "Bearer wrong"})
    logged = capfd.readouterr().err
    assert '"shadow event"' in logged
    assert answer.json()["correlation_id"] in logged
    for secret in ("5511987654321", "98765-4321", "Joana", "CPF", "123.456.789"):
        assert secret not in logged, secret


def test_database_and_spool_both_unavailable_is_503(postgres_server: str, tmp_path: Path) -> None:
    target = sa.engine.make_url(postgres_server)
    proxy = CuttableProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.open()
    via_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("the spool cannot be created under a file")
    settings = make_settings(via_proxy, tmp_path, spool_path=str(blocker / "spool"))
    server = LiveServer(create_app(settings, env={"WHATSAPP_CANONICAL_SHADOW_MODE": "false"}))
    try:
        base = server.start()
        with httpx.Client(base_url=base, timeout=30) as client:
            ok = client.post(
                "/webhooks/simulated", content=sim_body(sim_message("U-1")), headers=bearer()
            )
            proxy.cut()
            down = client.post(
                "/webhooks/simulated", content=sim_body(sim_message("U-2")), headers=bearer()
            )
    finally:
        server.stop()
        proxy.cut()
    assert ok.status_code == 200
    assert down.status_code == 503
    assert down.json()["error"] == "storage unavailable"


def test_ready_answers_in_time_when_the_database_takes_connections_but_not_queries(
    postgres_server: str, tmp_path: Path
) -> None:
    """A hung database (connections accepted, nothing answered): /ready hung for good."""
    from tests.ingest.test_refused_data import via_proxy

    proxy, url = via_proxy(postgres_server)
    proxy.open()
    server = LiveServer(create_app(make_settings(url, tmp_path), env={}))
    try:
        base = server.start()
        with httpx.Client(base_url=base, timeout=30) as client:
            before = client.get("/ready")
            proxy.stall()
            started = time.monotonic()
            hung = [client.get("/ready") for _ in range(2)]
            seconds = time.monotonic() - started
            health = client.get("/health")
    finally:
        proxy.cut()
        server.stop()
    assert before.status_code == 200
    assert [r.status_code for r in hung] == [503, 503]
    assert hung[0].json() == {"status": "not ready"}
    assert seconds < 2 * READY_TIMEOUT_SECONDS + 2
    assert health.status_code == 200

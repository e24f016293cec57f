"""Legacy passthrough (issue #9 §1) against a real local HTTP server: every webhook is
forwarded byte-identical, with the provider's signature and API-key headers, in order,
whatever wacanon's own verification does; the provider gets the legacy handler's answer,
502 when it does not answer in time — on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from tests.api.conftest import APP_SECRET, EVOLUTION_KEY, make_settings
from tests.ingest.test_routing_live import fetch
from tests.routing.events import T0, cloud_text, text_body
from wacanon.config import Settings
from wacanon.ingest.legacy import accounts_of
from wacanon.store.tables import events


class Legacy:
    """The team's existing handler: records what it gets, answers what it is told."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.status, self.body, self.delay = 202, b'{"legacy": "ok"}', 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                data = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.received.append((self.path, headers, data))
                time.sleep(owner.delay)
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def legacy() -> Iterator[Legacy]:
    server = Legacy()
    yield server
    server.close()


def _signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def test_every_webhook_reaches_the_legacy_handler_byte_identical_and_in_order(
    make_client: Any, database_url: str, legacy: Legacy
) -> None:
    client = make_client(legacy={"cloud_api": f"{legacy.url}/whatsapp/webhook"})
    sender = {"from": "5511987654321"}
    bodies = [orjson.dumps(cloud_text(f"wamid.L{i}", 1772366400 + i, **sender)) for i in range(5)]
    for body in bodies:
        answer = client.post("/webhooks/cloud_api", content=body, headers=_signed(body))
        assert (answer.status_code, answer.content) == (202, b'{"legacy": "ok"}')
    assert [data for _, _, data in legacy.received] == bodies  # byte-identical, in order
    path, headers, _ = legacy.received[0]
    assert path == "/whatsapp/webhook"
    assert headers["x-hub-signature-256"] == _signed(bodies[0])["X-Hub-Signature-256"]
    stored = fetch(database_url, sa.select(sa.func.count()).select_from(events))
    assert stored == [(5,)]  # wacanon stored them too


def test_the_legacy_handler_verifies_for_itself_whatever_wacanon_decides(
    make_client: Any, database_url: str, legacy: Legacy
) -> None:
    # wacanon's Evolution key is wrong: wacanon refuses and stores nothing, the legacy
    # handler still gets every webhook with the provider's apikey and answers for itself.
    providers = make_settings(database_url, Path("/tmp")).providers.model_dump()
    providers["evolution"]["api_key"] = "a-stale-key-nobody-sends-0000000"
    client = make_client(providers=providers, legacy={"evolution": legacy.url})
    legacy.status, legacy.body = 200, b"OK"
    body = orjson.dumps(text_body("E1", "5511987654321@s.whatsapp.net", at=T0))
    answer = client.post(
        "/webhooks/evolution",
        content=body,
        headers={"apikey": EVOLUTION_KEY, "Content-Type": "application/json"},
    )
    assert (answer.status_code, answer.text) == (200, "OK")
    (received,) = legacy.received
    assert received[2] == body
    assert received[1]["apikey"] == EVOLUTION_KEY
    assert fetch(database_url, sa.select(sa.func.count()).select_from(events)) == [(0,)]
    # A body that is not even JSON is forwarded too, and answered by the handler.
    legacy.status = 400
    broken = client.post("/webhooks/evolution/messages-upsert", content=b"{not json")
    assert broken.status_code == 400
    assert legacy.received[-1][0] == "/messages-upsert"  # the by-event URL keeps its event
    assert legacy.received[-1][2] == b"{not json"


def test_an_account_url_beats_the_providers_and_a_silent_handler_is_502(
    make_client: Any, database_url: str, legacy: Legacy
) -> None:
    accounts = make_settings(database_url, Path("/tmp")).model_dump()["accounts"]
    for account in accounts:
        if account["account_id"] == "loja-centro" and account["provider"] == "evolution":
            account["legacy_url"] = f"{legacy.url}/evolution/loja-centro"
    client = make_client(
        accounts=accounts, legacy={"evolution": f"{legacy.url}/other"}, legacy_timeout_seconds=0.5
    )
    body = orjson.dumps(text_body("A1", "5511987654321@s.whatsapp.net", at=T0))
    headers = {"apikey": EVOLUTION_KEY, "Content-Type": "application/json"}
    assert client.post("/webhooks/evolution", content=body, headers=headers).status_code == 202
    assert legacy.received[-1][0] == "/evolution/loja-centro"
    legacy.delay = 1.0  # slower than legacy_timeout_seconds
    slow = client.post(
        "/webhooks/evolution",
        content=orjson.dumps(text_body("A2", "5511987654321@s.whatsapp.net", at=T0 + 1)),
        headers=headers,
    )
    assert slow.status_code == 502
    assert "legacy" in slow.json()["error"]
    # wacanon kept both all the same.
    assert fetch(database_url, sa.select(sa.func.count()).select_from(events)) == [(2,)]


def test_a_handler_that_is_down_is_502_and_nothing_configured_changes_nothing(
    make_client: Any, database_url: str
) -> None:
    client = make_client(legacy={"simulated": "http://127.0.0.1:9/nobody-listens"})
    body = orjson.dumps(
        {"account": "sim-store-1", "events": [{"type": "message", "id": "S1", "from":
         "5511987654321", "text": "Oi", "timestamp": 1772366400}]}
    )  # fmt: skip
    headers = {"Authorization": "Bearer sim-token-for-tests", "Content-Type": "application/json"}
    assert client.post("/webhooks/simulated", content=body, headers=headers).status_code == 502
    direct = make_client()  # no [legacy]: wacanon's own answer
    answer = direct.post("/webhooks/simulated", content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["duplicates"] == 1


def test_accounts_are_read_from_each_providers_body() -> None:
    cloud = orjson.dumps(cloud_text("wamid.X", **{"from": "5511987654321"}))
    assert accounts_of("cloud_api", cloud) == ["106540352242922"]
    assert accounts_of("evolution", b'{"instance": "loja-1"}') == ["loja-1"]
    assert accounts_of("baileys", b'{"session": "s-1"}') == ["s-1"]
    assert accounts_of("simulated", b'{"account": "sim-1"}') == ["sim-1"]
    assert accounts_of("evolution", b"[1, 2]") == []
    assert accounts_of("cloud_api", b"{not json") == []


def test_a_legacy_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="legacy"):
        Settings.model_validate({"legacy": {"cloud_api": "ftp://example.com/hook"}})


def test_stored_nowhere_is_503_whatever_the_handler_said(database_url: str, tmp_path: Path) -> None:
    import asyncio

    from starlette.responses import Response

    from wacanon.api.legacy import LegacyAnswer, LegacyForwarder

    forwarder = LegacyForwarder(make_settings(database_url, tmp_path))

    async def decide(stored_nowhere: bool) -> Response:
        async def handler_said_ok() -> LegacyAnswer:
            return LegacyAnswer(200, b"OK", "text/plain")

        task = asyncio.create_task(handler_said_ok())
        return await forwarder.answer(task, Response(status_code=503), stored_nowhere)

    assert asyncio.run(decide(True)).status_code == 503  # the provider must retry
    assert asyncio.run(decide(False)).status_code == 200


def test_when_wacanons_pipeline_breaks_the_handler_still_gets_the_webhook(
    make_client: Any, database_url: str, legacy: Legacy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wacanon.api.routes import webhooks

    async def broken(*_: Any) -> Any:
        raise RuntimeError("a bug in the canonical pipeline")

    monkeypatch.setattr(webhooks, "_verified", broken)
    client = make_client(legacy={"evolution": legacy.url})
    body = orjson.dumps(text_body("B1", "5511987654321@s.whatsapp.net", at=T0))
    headers = {"apikey": EVOLUTION_KEY, "Content-Type": "application/json"}
    answer = client.post("/webhooks/evolution", content=body, headers=headers)
    assert answer.status_code == 503  # stored nowhere: the provider retries
    assert [data for _, _, data in legacy.received] == [body]

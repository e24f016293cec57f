"""Replies and records that say what happened: mixed batches, shadow redeliveries, masked
secrets, bodies that are not JSON, what a stranger learns, and slow uploads."""

from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.api.conftest import (
    EVOLUTION_KEY,
    PERSIST,
    LiveServer,
    bearer,
    hub_signature,
    make_settings,
    sim_body,
    sim_message,
)
from tests.api.test_webhooks import rows
from tests.golden import FIXTURES
from wacanon.api.app import create_app
from wacanon.store.tables import dead_letters, webhook_journal


def mixed_batch(first: str, second: str) -> bytes:
    payload = orjson.loads((FIXTURES / "cloud_api" / "batch_two_entries.json").read_bytes())
    for index, account in enumerate((first, second)):
        for change in payload["entry"][index]["changes"]:
            change["value"]["metadata"]["phone_number_id"] = account
    return orjson.dumps(payload)


def test_a_batch_with_an_unowned_account_flags_it_and_names_no_single_account(
    make_client: Any, database_url: str
) -> None:
    client = make_client()
    body = mixed_batch("999000111222333", "106540352242922")  # unowned first, owned second
    answer = client.post("/webhooks/cloud_api", content=body, headers=hub_signature(body))
    assert answer.status_code == 200
    assert answer.json()["unknown_account"] is True
    assert answer.json()["events"] >= 1
    (journal,) = rows(database_url, webhook_journal)
    assert (journal.outcome, journal.account_id, journal.shopper_id) == ("stored", None, None)


def test_a_batch_spanning_two_shoppers_names_neither(make_client: Any, database_url: str) -> None:
    accounts = [
        {"provider": "cloud_api", "account_id": "106540352242922", "shopper_id": "shop-A"},
        {"provider": "cloud_api", "account_id": "200000000000002", "shopper_id": "shop-B"},
    ]
    client = make_client(accounts=accounts)
    body = mixed_batch("200000000000002", "106540352242922")
    answer = client.post("/webhooks/cloud_api", content=body, headers=hub_signature(body))
    assert "unknown_account" not in answer.json()
    (journal,) = rows(database_url, webhook_journal)
    assert (journal.account_id, journal.shopper_id) == (None, None)
    one = mixed_batch("106540352242922", "106540352242922")
    client.post("/webhooks/cloud_api", content=one, headers=hub_signature(one))
    named = [r for r in rows(database_url, webhook_journal) if r.account_id]
    assert [(r.account_id, r.shopper_id) for r in named] == [("106540352242922", "shop-A")]


def test_shadow_mode_says_why_a_redelivery_is_not_a_duplicate(make_client: Any) -> None:
    client = make_client(env={})  # Phase 0: shadow mode on
    body = sim_body(sim_message("SHADOW-1"))
    first = client.post("/webhooks/simulated", content=body, headers=bearer()).json()
    again = client.post("/webhooks/simulated", content=body, headers=bearer()).json()
    assert first["shadow"] is True
    assert (again["events"], again["duplicates"], again["shadow"]) == (1, 0, True)
    stored = client.post(
        "/webhooks/simulated",
        content=sim_body(sim_message("SHADOW-2"), account="sim-store-2"),
        headers=bearer(),
    ).json()
    assert stored["shadow"] is True  # shop-2 is in shadow mode as well under Phase 0


def test_evolution_api_key_is_masked_in_what_is_kept(make_client: Any, database_url: str) -> None:
    client = make_client()
    body = orjson.dumps(
        {
            "event": "messages.upsert",
            "instance": "loja-centro",
            "apikey": EVOLUTION_KEY,
            "data": {"key": {"remoteJid": "5511987654321@s.whatsapp.net", "id": "M1"}},
        }
    )
    answer = client.post("/webhooks/evolution", content=body)
    assert answer.status_code == 200
    broken = body.replace(b'"data"', b'"date"')[:-1]  # not JSON: a dead letter
    client.post("/webhooks/evolution", content=broken, headers={"apikey": EVOLUTION_KEY})
    journals = rows(database_url, webhook_journal)
    assert all(EVOLUTION_KEY.encode() not in r.body for r in journals)
    assert [r.body_masked for r in journals] == [True, True]
    assert orjson.loads(journals[0].body)["apikey"] == "***"
    (letter,) = rows(database_url, dead_letters)
    assert EVOLUTION_KEY.encode() not in letter.body


def test_escaped_api_key_is_masked_too(make_client: Any, database_url: str) -> None:
    client = make_client()
    escaped = "".join(f"\\u{ord(c):04x}" for c in EVOLUTION_KEY)
    body = (
        b'{"event":"messages.upsert","instance":"loja-centro","apikey":"'
        + escaped.encode()
        + b'","data":{}}'
    )
    assert client.post("/webhooks/evolution", content=body).status_code == 200
    (journal,) = rows(database_url, webhook_journal)
    assert orjson.loads(journal.body)["apikey"] == "***"


def test_invalid_json_has_its_own_series_not_the_normalization_error_rate(
    make_client: Any,
) -> None:
    client = make_client()
    assert client.post("/webhooks/simulated", content=b"{", headers=bearer()).status_code == 400
    metrics = client.get("/metrics").text
    assert 'wacanon_invalid_json_total{provider="simulated"} 1.0' in metrics
    assert 'wacanon_normalization_errors_total{provider="simulated"}' not in metrics


def test_a_stranger_learns_neither_configuration_nor_database_details(
    make_client: Any, tmp_path: Path
) -> None:
    client = make_client(providers={})  # no provider configured
    answer = client.post("/webhooks/evolution", content=b"{}")
    assert answer.status_code == 401
    assert set(answer.json()) == {"correlation_id", "error"}
    assert answer.json()["error"] == "unauthorized"
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    server = LiveServer(create_app(make_settings(unreachable, tmp_path), env=PERSIST))
    try:
        ready = httpx.get(server.start() + "/ready", timeout=30)
    finally:
        server.stop()
    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready"}


def test_ready_reports_a_spool_that_cannot_be_written(make_client: Any, tmp_path: Any) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    client = make_client(spool_path=str(blocker / "spool"))
    assert client.get("/ready").status_code == 503


def test_evolution_event_urls_accept_only_event_names(make_client: Any) -> None:
    client = make_client()
    headers = {"apikey": EVOLUTION_KEY}
    body = b'{"event":"messages.upsert","instance":"loja-centro","data":{}}'
    for good in ("messages-upsert", "MESSAGES_UPSERT", "messages.upsert"):
        answer = client.post(f"/webhooks/evolution/{good}", content=body, headers=headers)
        assert answer.status_code == 200, good
    for bad in ("x" * 65, "messages%00upsert", "-upsert", "m%C3%A9ssages"):
        answer = client.post(f"/webhooks/evolution/{bad}", content=body, headers=headers)
        assert answer.status_code == 404, bad


def _sequential_p50(client: Any, prefix: str, count: int = 40) -> float:
    took = []
    for i in range(count):
        body = sim_body(sim_message(f"{prefix}-{i}"))
        started = time.perf_counter()
        assert client.post("/webhooks/simulated", content=body, headers=bearer()).is_success
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def test_a_stalled_upload_holds_back_nobody_s_commit(make_client: Any) -> None:
    """An unauthenticated POST stuck mid-body must not make commits wait for it."""
    client = make_client()
    _sequential_p50(client, "WARM", 10)
    alone = _sequential_p50(client, "ALONE")
    host, port = client.base_url.host, client.base_url.port
    stalled = socket.create_connection((host, port))
    try:
        stalled.sendall(
            b"POST /webhooks/simulated HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        time.sleep(0.2)
        beside = _sequential_p50(client, "BESIDE")
    finally:
        stalled.close()
    # Before the fix every commit waited the 4 ms gathering window for the stalled one.
    assert beside < alone + 0.002, (alone, beside)

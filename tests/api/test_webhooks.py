"""The webhook endpoints as providers drive them, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from tests.api.conftest import (
    EVOLUTION_KEY,
    VERIFY_TOKEN,
    bearer,
    bridge_signature,
    hub_signature,
    sim_body,
    sim_message,
)
from tests.golden import FIXTURES
from wacanon.store.database import create_engine
from wacanon.store.repository import counts
from wacanon.store.tables import dead_letters, events, webhook_journal


def table_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = counts(connection)
    engine.dispose()
    return found


def rows(url: str, table: sa.Table) -> list[Any]:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = list(connection.execute(sa.select(table)))
    engine.dispose()
    return found


def test_stores_events_and_answers_with_counts(make_client: Any, database_url: str) -> None:
    client = make_client()
    body = sim_body(sim_message("SIM-1"), sim_message("SIM-2", "Tem no 42?"))
    answer = client.post("/webhooks/simulated", content=body, headers=bearer())
    assert answer.status_code == 200
    data = answer.json()
    assert set(data) == {"correlation_id", "events", "duplicates", "ignored"}
    assert (data["events"], data["duplicates"], data["ignored"]) == (2, 0, 0)
    stored = rows(database_url, events)
    assert {r.provider_message_id for r in stored} == {"SIM-1", "SIM-2"}
    assert {r.shopper_id for r in stored} == {"shop-1"}
    payload = orjson.loads(stored[0].payload)
    assert payload["trace"]["correlation_id"] == data["correlation_id"]
    assert payload["security"]["signature_valid"] is True


def test_redelivery_answers_duplicates(make_client: Any, database_url: str) -> None:
    client = make_client()
    body = sim_body(sim_message("SIM-1"), sim_message("SIM-2"))
    first = client.post("/webhooks/simulated", content=body, headers=bearer()).json()
    again = client.post("/webhooks/simulated", content=body, headers=bearer()).json()
    assert (first["events"], first["duplicates"]) == (2, 0)
    assert (again["events"], again["duplicates"]) == (0, 2)
    assert table_counts(database_url)["events"] == 2
    assert table_counts(database_url)["webhook_journal"] == 2


def test_cloud_api_signature(make_client: Any, database_url: str) -> None:
    client = make_client()
    body = (FIXTURES / "cloud_api" / "text_single.json").read_bytes()
    ok = client.post("/webhooks/cloud_api", content=body, headers=hub_signature(body))
    assert ok.status_code == 200, ok.text
    assert ok.json()["events"] == 1
    forged = client.post(
        "/webhooks/cloud_api", content=body, headers=hub_signature(body, "wrong-secret")
    )
    assert forged.status_code == 401
    assert "correlation_id" in forged.json()
    missing = client.post("/webhooks/cloud_api", content=body)
    assert missing.status_code == 401
    assert table_counts(database_url)["webhook_journal"] == 1


def test_cloud_api_subscription_challenge(make_client: Any) -> None:
    client = make_client()
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    ok = client.get("/webhooks/cloud_api", params=params)
    assert (ok.status_code, ok.text) == (200, "1158201444")
    wrong = client.get("/webhooks/cloud_api", params={**params, "hub.verify_token": "nope"})
    assert wrong.status_code == 403


def test_evolution_api_key_in_header_body_and_by_event_urls(make_client: Any) -> None:
    client = make_client()
    payload = orjson.loads(
        (FIXTURES / "evolution" / "text_inbound_latest_lid_swapped.json").read_bytes()
    )
    payload["apikey"] = EVOLUTION_KEY
    in_body = orjson.dumps(payload)
    assert client.post("/webhooks/evolution", content=in_body).status_code == 200
    payload["apikey"] = None
    no_key = orjson.dumps(payload)
    assert client.post("/webhooks/evolution", content=no_key).status_code == 401
    by_header = client.post(
        "/webhooks/evolution/messages-upsert", content=no_key, headers={"apikey": EVOLUTION_KEY}
    )
    assert by_header.status_code == 200
    assert by_header.json()["duplicates"] == 1


def test_baileys_bridge_signature(make_client: Any) -> None:
    client = make_client()
    body = (FIXTURES / "baileys" / "upsert_text_v7_pn_addressed.json").read_bytes()
    assert (
        client.post("/webhooks/baileys", content=body, headers=bridge_signature(body)).status_code
        == 200
    )
    assert (
        client.post(
            "/webhooks/baileys", content=body, headers=bridge_signature(body, "x")
        ).status_code
        == 401
    )


def test_provider_without_secret_refuses_unless_allow_unsigned(
    make_client: Any, tmp_path: Any
) -> None:
    body = sim_body(sim_message("SIM-1"))
    closed = make_client(providers={"simulated": {"token": None}})
    assert closed.post("/webhooks/simulated", content=body).status_code == 401


def test_allow_unsigned_accepts_and_marks_events_unverified(
    make_client: Any, database_url: str
) -> None:
    client = make_client(providers={"simulated": {"allow_unsigned": True}})
    answer = client.post("/webhooks/simulated", content=sim_body(sim_message("SIM-9")))
    assert answer.status_code == 200
    (row,) = rows(database_url, events)
    assert orjson.loads(row.payload)["security"]["signature_valid"] is False


def test_shadow_mode_stores_no_event(make_client: Any, database_url: str) -> None:
    client = make_client(env={})  # the seed's Phase 0 defaults: shadow on
    answer = client.post(
        "/webhooks/simulated", content=sim_body(sim_message("SIM-1")), headers=bearer()
    )
    assert answer.json()["events"] == 1
    found = table_counts(database_url)
    assert (found["events"], found["webhook_journal"]) == (0, 1)
    assert rows(database_url, webhook_journal)[0].outcome == "shadow"


def test_canonical_disabled_only_journals(make_client: Any, database_url: str) -> None:
    client = make_client(env={"WHATSAPP_CANONICAL_EVENTS_ENABLED": "false"})
    answer = client.post(
        "/webhooks/simulated", content=sim_body(sim_message("SIM-1")), headers=bearer()
    )
    assert answer.status_code == 200
    assert answer.json()["events"] == 0
    (journal,) = rows(database_url, webhook_journal)
    assert journal.outcome == "disabled"
    assert table_counts(database_url)["events"] == 0


def test_unknown_account_is_journaled_and_counted(make_client: Any, database_url: str) -> None:
    client = make_client()
    body = sim_body(sim_message("SIM-1"), account="nobody-owns-this")
    answer = client.post("/webhooks/simulated", content=body, headers=bearer())
    assert answer.status_code == 200
    assert answer.json()["unknown_account"] is True
    (journal,) = rows(database_url, webhook_journal)
    assert journal.outcome == "unknown_account"
    metrics = client.get("/metrics").text
    assert 'wacanon_unknown_accounts_total{provider="simulated"} 1.0' in metrics


def test_invalid_json_is_400_and_dead_lettered(make_client: Any, database_url: str) -> None:
    client = make_client()
    answer = client.post("/webhooks/simulated", content=b'{"account": ', headers=bearer())
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("invalid JSON")
    (letter,) = rows(database_url, dead_letters)
    assert (letter.kind, letter.body) == ("invalid_json", b'{"account": ')


def test_partly_broken_payload_stores_the_rest_and_dead_letters(
    make_client: Any, database_url: str
) -> None:
    client = make_client()
    body = sim_body(sim_message("SIM-1"), {"type": "teleport"})
    answer = client.post("/webhooks/simulated", content=body, headers=bearer())
    assert answer.status_code == 200
    assert answer.json()["events"] == 1
    (letter,) = rows(database_url, dead_letters)
    assert "$.events[1]" in letter.error


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_accepted_when_the_body_parses(
    make_client: Any, content_type: str | None
) -> None:
    client = make_client()
    headers = bearer()
    if content_type is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = content_type
    answer = client.post(
        "/webhooks/simulated", content=sim_body(sim_message("SIM-1")), headers=headers
    )
    assert answer.status_code == 200


def test_body_over_the_limit_is_413(make_client: Any) -> None:
    client = make_client(max_body_bytes=1024)
    big = sim_body(sim_message("SIM-1", "x" * 2000))
    assert client.post("/webhooks/simulated", content=big, headers=bearer()).status_code == 413


def test_unknown_provider_is_404(make_client: Any) -> None:
    client = make_client()
    assert client.post("/webhooks/telegram", content=b"{}").status_code == 404


def test_paths_and_methods_nothing_serves_answer_the_error_shape(make_client: Any) -> None:
    """Every refusal is ``{"error": …}`` — not FastAPI's ``{"detail": "Not Found"}``."""
    client = make_client()
    missing = client.get("/v1/nothing")
    assert (missing.status_code, missing.json()) == (404, {"error": "not found"})
    deeper = client.post("/webhooks/simulated/extra", content=b"{}")
    assert (deeper.status_code, deeper.json()) == (404, {"error": "not found"})
    wrong = client.post("/health")
    assert (wrong.status_code, wrong.json()) == (405, {"error": "method not allowed"})
    assert wrong.headers["allow"] == "GET"


def test_unicode_emoji_huge_numbers_and_deep_nesting_are_safe(make_client: Any) -> None:
    client = make_client()
    text = "Olá 👋🏽 ação — 中文 — \u200d"
    ok = client.post(
        "/webhooks/simulated", content=sim_body(sim_message("SIM-U", text)), headers=bearer()
    )
    assert ok.status_code == 200
    huge = (
        b'{"account": "sim-store-1", "events": [{"type": "message", "id": "x", "from": "1", '
        b'"timestamp": 1' + b"0" * 400 + b"}]}"
    )
    assert client.post("/webhooks/simulated", content=huge, headers=bearer()).status_code == 200
    deep = b'{"account": "sim-store-1", "events": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert client.post("/webhooks/simulated", content=deep, headers=bearer()).status_code in (
        200,
        400,
    )


def test_health_ready_metrics(make_client: Any) -> None:
    client = make_client()
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    client.post("/webhooks/simulated", content=sim_body(sim_message("SIM-1")), headers=bearer())
    text = client.get("/metrics").text
    for name in (
        "wacanon_webhooks_total",
        "wacanon_events_total",
        "wacanon_duplicates_total",
        "wacanon_signature_failures_total",
        "wacanon_spool_depth",
        "wacanon_webhook_seconds_bucket",
        "wacanon_normalize_seconds_bucket",
        "wacanon_persist_seconds_bucket",
    ):
        assert name in text, name


def test_a_batch_mixing_owned_and_unowned_accounts_counts_the_unknown(
    make_client: Any, database_url: str
) -> None:
    client = make_client()
    payload = orjson.loads((FIXTURES / "cloud_api" / "batch_two_entries.json").read_bytes())
    for change in payload["entry"][1]["changes"]:
        change["value"]["metadata"]["phone_number_id"] = "999000111222333"  # nobody's
    body = orjson.dumps(payload)
    answer = client.post("/webhooks/cloud_api", content=body, headers=hub_signature(body))
    assert answer.status_code == 200
    stored = rows(database_url, events)
    assert stored
    assert {r.account_id for r in stored} == {"106540352242922"}
    metrics = client.get("/metrics").text
    assert 'wacanon_unknown_accounts_total{provider="cloud_api"} 1.0' in metrics

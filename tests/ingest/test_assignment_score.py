"""Business events and the SKM score through the live server (issue #8 §5), on SQLite
and PostgreSQL: ``POST /v1/events`` stores once per key and refuses clearly; the score
counts each status fact once, the catalog's weights, first-response time, the unanswered
and the failure-run risk — for the SKM the conversation had at that moment."""

from __future__ import annotations

from typing import Any

import httpx

from tests.ingest.test_assignment_directory import OTHER_TOKEN, _client
from tests.ingest.test_assignment_live import AUTH, conversation_of, customer, wait_for
from tests.ingest.test_routing_live import evolution, wait_routed
from tests.routing.events import T0, status_body, text_body


def _order(conversation_id: str, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_type": "commerce.order.created",
        "conversation_id": conversation_id,
        "idempotency_key": key,
        "occurred_at": "2026-03-01T09:05:00Z",
        "data": {"order_id": "PED-1001", "total": "349.90", "currency": "BRL", "nota": "tênis 👟"},
        **extra,
    }


def _score(client: httpx.Client, skm: str, **params: str) -> dict[str, Any]:
    reply = client.get(f"/v1/skms/{skm}/score", params=params, headers=AUTH)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_business_events_and_the_score(make_client: Any, database_url: str) -> None:
    client = _client(make_client)
    chat = customer(0)
    evolution(client, text_body("IN1", chat, at=T0))
    evolution(client, text_body("OUT1", chat, from_me=True, at=T0 + 30))
    for status in ("SERVER_ACK", "DELIVERY_ACK", "READ", "READ"):  # READ redelivered
        evolution(client, status_body("OUT1", chat, status, at=T0 + 40))
    wait_routed(database_url, expected_events=2 + 3 + 2)  # messages, statuses, opened+assigned
    conversation = conversation_of(client, chat.split("@")[0])
    skm = conversation["skm_id"]
    assert skm == "skm-ana"

    first = client.post(
        "/v1/events", json=_order(conversation["id"], "order-PED-1001"), headers=AUTH
    )
    assert first.status_code == 201, first.text
    assert first.json()["duplicate"] is False
    again = client.post(
        "/v1/events",
        json=_order(None, "order-PED-1001", thread_key=conversation["thread_key"])
        | {"conversation_id": None},
        headers=AUTH,
    )
    assert again.status_code == 200
    assert again.json() == {"event_id": first.json()["event_id"], "duplicate": True}
    wait_routed(database_url, expected_events=2 + 3 + 2 + 1)

    stored = client.get(
        "/v1/events", params={"type": "commerce.order.created"}, headers=AUTH
    ).json()["items"]
    (order,) = stored
    assert order["event_id"] == first.json()["event_id"]
    assert order["routing"]["conversation_id"] == conversation["id"]
    assert order["routing"]["skm_id"] == "skm-ana"
    assert order["data"]["nota"] == "tênis 👟"

    s = _score(client, "skm-ana")
    assert s == {
        "skm_id": "skm-ana",
        "points": 1 + 2 + 3 + 5,
        "open": 1,
        "closed": 0,
        "waiting": 0,
        "first_response_p50_s": 30.0,
        "first_response_p90_s": 30.0,
        "unanswered": 0,
        "risk_flags": [],
    }
    assert _score(client, "skm-ana", since="2026-03-02T00:00:00Z")["points"] == 0
    assert _score(client, "skm-bia")["points"] == 0

    # The customer writes again and three answers fail: unanswered, and the risk.
    evolution(client, text_body("IN2", chat, at=T0 + 100))
    for i in range(3):
        evolution(client, text_body(f"F{i}", chat, from_me=True, at=T0 + 110 + i))
        evolution(client, status_body(f"F{i}", chat, "ERROR", at=T0 + 120 + i))
    evolution(client, text_body("IN3", chat, at=T0 + 200))
    wait_routed(database_url, expected_events=8 + 1 + 6 + 1)
    s = wait_for(lambda: (found := _score(client, "skm-ana"))["unanswered"] == 1 and found)
    assert s["points"] == 11 - 15
    assert s["risk_flags"] == ["multiple_failures"]


def test_business_events_are_refused_clearly(make_client: Any, database_url: str) -> None:
    client = _client(make_client)
    evolution(client, text_body("IN1", customer(0), at=T0))
    wait_routed(database_url, expected_events=3)
    conversation = conversation_of(client, customer(0).split("@")[0])

    def post(body: dict[str, Any], headers: dict[str, str] = AUTH) -> httpx.Response:
        return client.post("/v1/events", json=body, headers=headers)

    unknown = post(_order(conversation["id"], "k1", event_type="commerce.order.teleported"))
    assert unknown.status_code == 422
    assert unknown.json()["error"].startswith("event_type:")
    body = _order(conversation["id"], "k2")
    del body["occurred_at"]
    missing = post(body)
    assert missing.status_code == 422
    assert missing.json()["error"].startswith("occurred_at:")
    naive = post(_order(conversation["id"], "k3", occurred_at="2026-03-01T09:05:00"))
    assert naive.status_code == 422
    assert naive.json()["error"].startswith("occurred_at:")
    neither = post(_order(None, "k4") | {"conversation_id": None})
    assert neither.status_code == 422
    assert "thread_key" in neither.json()["error"]
    nowhere = post(_order("no-such-conversation", "k5"))
    assert nowhere.status_code == 404
    assert nowhere.json()["error"].startswith("conversation_id:")
    other = post(_order(conversation["id"], "k6"), {"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert other.status_code == 404  # another shopper's conversation does not exist for it
    listed = client.get("/v1/events", params={"type": "commerce.order.created"}, headers=AUTH)
    assert listed.json()["items"] == []  # nothing refused was stored

"""The read API under /v1 on the live server: shapes, pagination, and tenant isolation on
every endpoint (another shopper's data is 404, as if it did not exist)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.api.conftest import bearer, sim_body, sim_message
from tests.ingest.test_routing_live import ROUTING_ON, evolution, wait_routed
from tests.routing.events import LID, PHONE, status_body, text_body

SHOP_1 = "token-of-shop-1-0123456789"
SHOP_2 = "token-of-shop-2-0123456789"
EVERYONE = "token-for-all-shoppers-0123"
TOKENS = [
    {"token": SHOP_1, "shopper_id": "shop-1"},
    {"token": SHOP_2, "shopper_id": "shop-2"},
    {"token": EVERYONE, "shopper_id": "*"},
]
CONVERSATION_KEYS = {
    "id", "thread_key", "shopper_id", "chat_type", "chat_id", "status", "skm_id",
    "opened_at", "closed_at", "last_event_at", "last_inbound_at", "last_outbound_at",
    "first_response_at", "waiting_since", "identities",
}  # fmt: skip


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def routed(make_client: Any, database_url: str) -> tuple[httpx.Client, dict[str, str]]:
    """shop-1: one customer (LID, then phone with the LID) with an answered message;
    shop-2: one simulated customer. Returns the client and each shop's conversation id."""
    client = make_client(env=ROUTING_ON, api_tokens=TOKENS)
    evolution(client, text_body("M1", f"{LID}@lid"))
    evolution(client, text_body("M2", f"{PHONE}@s.whatsapp.net", f"{LID}@lid", at=1772355660))
    evolution(client, text_body("M3", f"{PHONE}@s.whatsapp.net", from_me=True, at=1772355720))
    evolution(client, status_body("M3", f"{PHONE}@s.whatsapp.net", "READ", at=1772355780))
    body = sim_body(sim_message("S1", sender="5521999990000"), account="sim-store-2")
    assert client.post("/webhooks/simulated", content=body, headers=bearer()).status_code == 200
    wait_routed(database_url, expected_events=6)
    everything = client.get("/v1/conversations", headers=auth(EVERYONE)).json()["items"]
    ids = {item["shopper_id"]: item["id"] for item in everything}
    assert set(ids) == {"shop-1", "shop-2"}
    return client, ids


def test_every_endpoint_refuses_a_missing_or_unknown_token(
    routed: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, ids = routed
    cid = ids["shop-1"]
    calls = [
        ("GET", "/v1/conversations"),
        ("GET", f"/v1/conversations/{cid}"),
        ("GET", f"/v1/conversations/{cid}/events"),
        ("GET", f"/v1/conversations/{cid}/messages"),
        ("POST", f"/v1/conversations/{cid}/close"),
        ("GET", f"/v1/conversations/lookup?shopper_id=shop-1&wa_id={PHONE}"),
        ("GET", "/v1/events"),
    ]
    for method, path in calls:
        for headers in ({}, auth("not-a-token-of-ours-at-all"), {"Authorization": "Basic x"}):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "error" in response.json()


def test_a_shoppers_token_never_sees_another_shoppers_data(
    routed: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, ids = routed
    other = ids["shop-2"]
    mine = client.get("/v1/conversations", headers=auth(SHOP_1)).json()["items"]
    assert [c["id"] for c in mine] == [ids["shop-1"]]
    for method, path in [
        ("GET", f"/v1/conversations/{other}"),
        ("GET", f"/v1/conversations/{other}/events"),
        ("GET", f"/v1/conversations/{other}/messages"),
        ("POST", f"/v1/conversations/{other}/close"),
        ("GET", "/v1/conversations?shopper_id=shop-2"),
        ("GET", "/v1/conversations/lookup?shopper_id=shop-2&wa_id=5521999990000"),
        ("GET", "/v1/events?shopper_id=shop-2"),
    ]:
        response = client.request(method, path, headers=auth(SHOP_1))
        assert response.status_code == 404, (method, path, response.text)
        unknown = path.replace(other, "00000000-0000-5000-8000-000000000000").replace(
            "shop-2", "shop-9"
        )
        assert client.request(method, unknown, headers=auth(SHOP_1)).status_code == 404
    events = client.get("/v1/events", headers=auth(SHOP_1)).json()["items"]
    assert events
    assert {e["routing"]["shopper_id"] for e in events} == {"shop-1"}
    # still open: the close attempt above did nothing to shop-2's conversation
    theirs = client.get(f"/v1/conversations/{other}", headers=auth(SHOP_2)).json()
    assert theirs["status"] == "open"


def test_conversation_shapes_events_in_order_and_messages_with_status(
    routed: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, ids = routed
    cid = ids["shop-1"]
    item = client.get(f"/v1/conversations/{cid}", headers=auth(SHOP_1)).json()
    assert set(item) == CONVERSATION_KEYS | {"participants"}
    assert item["thread_key"] == f"whatsapp:lid:{LID}|shopper:shop-1|group:null"
    assert item["identities"] == {"wa_id": PHONE, "lid": LID, "user_id": None}
    assert item["first_response_at"] == "2026-03-01T09:02:00Z"
    (customer,) = item["participants"]
    assert (customer["wa_id"], customer["lid"], customer["role"]) == (PHONE, LID, "customer")
    events = client.get(f"/v1/conversations/{cid}/events", headers=auth(SHOP_1)).json()
    times = [e["occurred_at"] for e in events["items"]]
    assert times == sorted(times)
    assert {e["routing"]["conversation_id"] for e in events["items"]} == {cid}
    assert events["items"][0]["event_type"] == "whatsapp.message.inbound"
    assert "whatsapp.conversation.opened" in {e["event_type"] for e in events["items"]}
    page = client.get(f"/v1/conversations/{cid}/messages", headers=auth(SHOP_1)).json()
    assert [(m["message_id"], m["direction"], m["status"]) for m in page["items"]] == [
        ("M1", "inbound", None),
        ("M2", "inbound", None),
        ("M3", "outbound", "read"),
    ]
    found = client.get(
        f"/v1/conversations/lookup?shopper_id=shop-1&wa_id=lid:{LID}", headers=auth(SHOP_1)
    )
    assert found.status_code == 200
    assert found.json()["id"] == cid


def test_pages_follow_their_cursor_and_a_forged_cursor_is_400(
    routed: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, ids = routed
    cid = ids["shop-1"]
    seen: list[str] = []
    url: str | None = f"/v1/conversations/{cid}/events?limit=2"
    while url is not None:
        page = client.get(url, headers=auth(SHOP_1)).json()
        seen += [e["event_id"] for e in page["items"]]
        cursor = page["next_cursor"]
        url = f"/v1/conversations/{cid}/events?limit=2&cursor={cursor}" if cursor else None
    everything = client.get(f"/v1/conversations/{cid}/events", headers=auth(SHOP_1)).json()
    assert seen == [e["event_id"] for e in everything["items"]]
    assert len(seen) > 2
    forged = client.get("/v1/events?cursor=bm90LWEtY3Vyc29y", headers=auth(SHOP_1))
    assert forged.status_code == 400


def test_close_by_api_closes_once_and_the_openapi_document_lists_v1(
    routed: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, ids = routed
    cid = ids["shop-1"]
    first = client.post(f"/v1/conversations/{cid}/close", headers=auth(SHOP_1)).json()
    again = client.post(f"/v1/conversations/{cid}/close", headers=auth(SHOP_1)).json()
    assert (first["status"], first["closed_now"], again["closed_now"]) == ("closed", True, False)
    events = client.get(f"/v1/conversations/{cid}/events", headers=auth(SHOP_1)).json()["items"]
    closes = [e for e in events if e["event_type"] == "whatsapp.conversation.closed"]
    assert [c["conversation"]["reason"] for c in closes] == ["command"]
    spec = orjson.loads(client.get("/openapi.json").content)
    assert "/v1/conversations/{conversation_id}/events" in spec["paths"]


def test_bad_parameters_are_400_with_the_one_error_shape(
    routed: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, _ = routed
    for path, names in [
        ("/v1/conversations?limit=0", "limit"),
        ("/v1/conversations?limit=501", "limit"),
        ("/v1/conversations?status=bogus", "status"),
        ("/v1/conversations/lookup?wa_id=5511987654321", "shopper_id"),
        ("/v1/events?since=yesterday", "since"),
    ]:
        response = client.get(path, headers=auth(EVERYONE))
        assert response.status_code == 400, (path, response.text)
        assert set(response.json()) == {"error"}
        assert names in response.json()["error"], response.json()

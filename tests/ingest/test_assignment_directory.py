"""The SKM directory at runtime through the live server (issue #8 §1, §3): adding an SKM,
raising a capacity or activating one drains the waiting queue at once; deactivating one
reassigns their open conversations by the policy, naming them; manual assignment may
exceed capacity and says so, and a rebuild replays it — on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.api.conftest import make_settings
from tests.ingest.test_assignment_live import (
    AUTH,
    SKMS,
    TOKEN,
    conversation_of,
    customer,
    wait_for,
)
from tests.ingest.test_routing_live import ROUTING_ON, evolution, fetch, router_of, wait_routed
from tests.routing.events import T0, text_body
from wacanon.store.tables import events

OTHER_TOKEN = "token-of-shop-2-0123456789"


def _client(make_client: Any, **overrides: Any) -> httpx.Client:
    overrides.setdefault("shoppers", [{"id": "shop-1"}, {"id": "shop-2"}])
    overrides.setdefault("skms", SKMS)
    client: httpx.Client = make_client(
        env=ROUTING_ON,
        api_tokens=[
            {"token": TOKEN, "shopper_id": "shop-1"},
            {"token": OTHER_TOKEN, "shopper_id": "shop-2"},
        ],
        **overrides,
    )
    # The server seeds its directory from [[skms]] as its routing thread starts.
    wait_for(lambda: len(client.get("/v1/skms", headers=AUTH).json()["items"]) == len(SKMS))
    return client


def _three_customers(client: httpx.Client, database_url: str) -> list[dict[str, Any]]:
    """Ana and Bia (capacity 1 each) get one each; the third waits."""
    for i in range(3):
        evolution(client, text_body(f"M{i}", customer(i), at=T0 + i))
    wait_routed(database_url, expected_events=3 + 3 + 2)
    return [conversation_of(client, customer(i).split("@")[0]) for i in range(3)]


def _loads(client: httpx.Client) -> dict[str, tuple[int, int, bool]]:
    items = client.get("/v1/skms", headers=AUTH).json()["items"]
    return {s["id"]: (s["open"], s["capacity"], s["active"]) for s in items}


def test_directory_changes_drain_the_queue_and_reassign(
    make_client: Any, database_url: str
) -> None:
    client = _client(make_client)
    first, second, third = _three_customers(client, database_url)
    assert third["skm_id"] is None
    bia_had = second["id"] if second["skm_id"] == "skm-bia" else first["id"]

    # Bia leaves: her conversation goes by the policy — everyone is full, so it waits,
    # and the record names her.
    reply = client.patch("/v1/skms/skm-bia", json={"active": False}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["id"], body["active"], body["open"]) == ("skm-bia", False, 0)
    (followed,) = body["assignments"]
    assert followed["conversation_id"] == bia_had
    assert (followed["skm_id"], followed["previous_skm_id"]) == (None, "skm-bia")
    queue = client.get("/v1/queue", headers=AUTH).json()["items"]
    assert [q["conversation_id"] for q in queue] == [third["id"], bia_had]  # oldest first

    # A new SKM takes the queue's head at once.
    reply = client.post(
        "/v1/skms",
        json={"id": "skm-caio", "shopper_id": "shop-1", "name": "Caio", "capacity": 1},
        headers=AUTH,
    )
    assert reply.status_code == 201, reply.text
    (followed,) = reply.json()["assignments"]
    assert (followed["conversation_id"], followed["skm_id"]) == (third["id"], "skm-caio")
    assert followed["reason"].startswith("waited in the queue since")

    # Raising Ana's capacity gives her the next one.
    reply = client.patch("/v1/skms/skm-ana", json={"capacity": 2}, headers=AUTH)
    (followed,) = reply.json()["assignments"]
    assert (followed["conversation_id"], followed["skm_id"]) == (bia_had, "skm-ana")
    assert client.get("/v1/queue", headers=AUTH).json() == {"items": []}
    assert _loads(client) == {
        "skm-ana": (2, 2, True),
        "skm-bia": (0, 1, False),
        "skm-caio": (1, 1, True),
    }
    history = client.get(f"/v1/conversations/{bia_had}/assignments", headers=AUTH).json()
    assert [(h["skm_id"], h["previous_skm_id"]) for h in history["items"]] == [
        ("skm-bia", None),
        (None, "skm-bia"),
        ("skm-ana", None),
    ]

    # Activating Bia again: nobody waits, so nothing follows.
    reply = client.patch("/v1/skms/skm-bia", json={"active": True}, headers=AUTH)
    assert reply.json()["assignments"] == []
    # Every change is a whatsapp.thread.assigned event, stored once.
    keys = fetch(
        database_url,
        sa.select(events.c.idempotency_key).where(
            events.c.event_type == "whatsapp.thread.assigned"
        ),
    )
    assert len(keys) == len({k for (k,) in keys}) == 2 + 3


def test_directory_writes_are_refused_clearly_and_scoped(
    make_client: Any, database_url: str
) -> None:
    client = _client(make_client)
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    # Another shopper's token neither sees nor changes shop-1's SKMs.
    assert client.get("/v1/skms/skm-ana", headers=other).status_code == 404
    assert client.patch("/v1/skms/skm-ana", json={"capacity": 9}, headers=other).status_code == 404
    new = {"id": "skm-x", "shopper_id": "shop-1", "name": "X"}
    assert client.post("/v1/skms", json=new, headers=other).status_code == 404
    # Clear refusals, naming the field.
    duplicate = client.post("/v1/skms", json={**new, "id": "skm-ana"}, headers=AUTH)
    assert duplicate.status_code == 409
    assert "skm-ana" in duplicate.json()["error"]
    shared = client.post("/v1/skms", json={**new, "wa_ids": ["5511911110002"]}, headers=AUTH)
    assert shared.status_code == 409
    assert "skm-bia" in shared.json()["error"]
    bad = client.post("/v1/skms", json={**new, "wa_ids": ["not a number"]}, headers=AUTH)
    assert bad.status_code == 422
    assert "wa_ids" in bad.json()["error"]
    missing = client.post("/v1/skms", json={"id": "skm-y", "shopper_id": "shop-1"}, headers=AUTH)
    assert missing.status_code == 422
    assert missing.json()["error"].startswith("name:")
    negative = client.patch("/v1/skms/skm-ana", json={"capacity": -1}, headers=AUTH)
    assert negative.status_code == 422
    assert "capacity" in negative.json()["error"]
    unknown = client.patch("/v1/skms/skm-ana", json={"shopper_id": "shop-2"}, headers=AUTH)
    assert unknown.status_code == 422
    assert client.patch("/v1/skms/skm-nobody", json={"capacity": 1}, headers=AUTH).status_code == (
        404
    )
    assert _loads(client)["skm-ana"] == (0, 1, True)  # nothing refused changed anything


def test_manual_assignment_exceeds_capacity_and_a_rebuild_replays_it(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    client = _client(make_client)
    first, second, third = _three_customers(client, database_url)
    bia_had = second if second["skm_id"] == "skm-bia" else first
    ana_had = first if bia_had is second else second

    # To Ana by hand, although she is full: it says so; Bia's room goes to the queue.
    reply = client.post(
        f"/v1/conversations/{bia_had['id']}/assign", json={"skm_id": "skm-ana"}, headers=AUTH
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["skm_id"], body["assigned_now"]) == ("skm-ana", True)
    a = body["assignment"]
    assert (a["policy"], a["step"], a["previous_skm_id"]) == ("manual", "manual", "skm-bia")
    assert "above capacity" in a["reason"]
    assert conversation_of(client, third["chat_id"])["skm_id"] == "skm-bia"  # drained
    assert [(f["conversation_id"], f["skm_id"]) for f in body["assignments"]] == [
        (third["id"], "skm-bia")
    ]
    assert _loads(client) == {"skm-ana": (2, 1, True), "skm-bia": (1, 1, True)}
    again = client.post(
        f"/v1/conversations/{bia_had['id']}/assign", json={"skm_id": "skm-ana"}, headers=AUTH
    )
    assert (again.json()["assigned_now"], again.json()["assignment"]) == (False, None)
    # Refusals: no such SKM, another shopper's conversation, a missing field.
    nobody = client.post(
        f"/v1/conversations/{ana_had['id']}/assign", json={"skm_id": "skm-x"}, headers=AUTH
    )
    assert nobody.status_code == 404
    assert "skm-x" in nobody.json()["error"]
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    hidden = client.post(
        f"/v1/conversations/{ana_had['id']}/assign", json={"skm_id": "skm-bia"}, headers=other
    )
    assert hidden.status_code == 404
    empty = client.post(f"/v1/conversations/{ana_had['id']}/assign", json={}, headers=AUTH)
    assert empty.status_code == 422
    assert empty.json()["error"].startswith("skm_id:")

    before = {c["id"]: c["skm_id"] for c in client.get("/v1/conversations", headers=AUTH).json()[
        "items"
    ]}  # fmt: skip
    router, engine = router_of(database_url, tmp_path)
    try:
        router.settings = router.settings.model_copy(
            update={"skms": [], "api_tokens": []}
        )  # the directory lives in the database
        router.rebuild("shop-1")
    finally:
        engine.dispose()
    after = {c["id"]: c["skm_id"] for c in client.get("/v1/conversations", headers=AUTH).json()[
        "items"
    ]}  # fmt: skip
    assert after == before
    manual = fetch(
        database_url,
        sa.select(events.c.provider_event).where(
            events.c.provider_event == "wacanon.command.assign"
        ),
    )
    assert len(manual) == 1  # replayed, not stored again


def test_a_customer_left_unanswered_goes_to_another_skm(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    shoppers = [{"id": "shop-1", "reassign_unanswered_minutes": 30}, {"id": "shop-2"}]
    skms = [SKMS[0], {**SKMS[1], "capacity": 2}]
    client = _client(make_client, shoppers=shoppers, skms=skms)
    now = int(time.time()) - 60  # recent: the server's own check has nothing to do yet
    evolution(client, text_body("W1", customer(0), at=now))
    evolution(client, text_body("W2", customer(1), at=now + 1))
    evolution(client, text_body("A2", customer(1), from_me=True, at=now + 5))  # answered
    wait_routed(database_url, expected_events=3 + 2 + 2)
    waiting = conversation_of(client, customer(0).split("@")[0])
    answered = conversation_of(client, customer(1).split("@")[0])
    router, engine = router_of(database_url, tmp_path)
    try:
        router.settings = make_settings(database_url, tmp_path, shoppers=shoppers, skms=skms)
        at = datetime.fromtimestamp(now, UTC)
        assert router.reassign_unanswered(at + timedelta(minutes=29)) == 0  # not yet
        assert router.reassign_unanswered(at + timedelta(minutes=31)) == 1
    finally:
        engine.dispose()
    moved = conversation_of(client, waiting["chat_id"])
    assert moved["skm_id"] != waiting["skm_id"]
    assert conversation_of(client, answered["chat_id"])["skm_id"] == answered["skm_id"]
    last = client.get(f"/v1/conversations/{moved['id']}/assignments", headers=AUTH).json()["items"][
        -1
    ]
    assert last["previous_skm_id"] == waiting["skm_id"]
    assert last["reason"].startswith(f"unanswered: {waiting['skm_id']} did not answer within 30")
    assert {k: v[0] for k, v in _loads(client).items()} == {"skm-ana": 0, "skm-bia": 2}
    # Bia does not answer either: back to Ana, 30 minutes after Bia got it.
    router, engine = router_of(database_url, tmp_path)
    try:
        router.settings = make_settings(database_url, tmp_path, shoppers=shoppers, skms=skms)
        assert router.reassign_unanswered(at + timedelta(minutes=31 + 29)) == 0
        assert router.reassign_unanswered(at + timedelta(minutes=31 + 31)) == 1
    finally:
        engine.dispose()
    assert conversation_of(client, waiting["chat_id"])["skm_id"] == waiting["skm_id"]


def test_least_loaded_and_sticky_through_the_live_server(
    make_client: Any, database_url: str
) -> None:
    skms = [{**SKMS[0], "capacity": 2}, {**SKMS[1], "capacity": 2}]
    env = {**ROUTING_ON, "WHATSAPP_ASSIGNMENT_POLICY": "least_loaded"}
    client = make_client(
        env=env,
        skms=skms,
        shoppers=[{"id": "shop-1"}],
        api_tokens=[{"token": TOKEN, "shopper_id": "shop-1"}],
    )
    wait_for(lambda: len(client.get("/v1/skms", headers=AUTH).json()["items"]) == 2)
    for i in range(3):
        evolution(client, text_body(f"L{i}", customer(i), at=T0 + i))
    wait_routed(database_url, expected_events=3 * 3)
    got = [conversation_of(client, customer(i).split("@")[0])["skm_id"] for i in range(3)]
    # A tie at 0/2 goes to who was never assigned, then by id; at 1/2 each, to the one
    # idle longest: Ana.
    assert got == ["skm-ana", "skm-bia", "skm-ana"]
    third = conversation_of(client, customer(2).split("@")[0])
    (entry,) = client.get(f"/v1/conversations/{third['id']}/assignments", headers=AUTH).json()[
        "items"
    ]
    assert (entry["policy"], entry["step"]) == ("least_loaded", "least_loaded")


def test_sticky_brings_a_returning_customer_back_to_their_skm(
    make_client: Any, database_url: str
) -> None:
    env = {**ROUTING_ON, "WHATSAPP_ASSIGNMENT_POLICY": "sticky"}
    skms = [{**SKMS[0], "capacity": 5}, {**SKMS[1], "capacity": 5}]
    client = make_client(
        env=env,
        skms=skms,
        shoppers=[{"id": "shop-1"}],
        api_tokens=[{"token": TOKEN, "shopper_id": "shop-1"}],
    )
    wait_for(lambda: len(client.get("/v1/skms", headers=AUTH).json()["items"]) == 2)
    evolution(client, text_body("S0", customer(0), at=T0))
    evolution(client, text_body("S1", customer(1), at=T0 + 1))
    wait_routed(database_url, expected_events=2 * 3)
    first = conversation_of(client, customer(0).split("@")[0])
    assert first["skm_id"] == "skm-ana"  # round robin from the start
    assert conversation_of(client, customer(1).split("@")[0])["skm_id"] == "skm-bia"
    assert client.post(f"/v1/conversations/{first['id']}/close", headers=AUTH).status_code == 200
    evolution(client, text_body("S2", customer(2), at=T0 + 2))  # round robin's next: Ana
    evolution(client, text_body("S3", customer(0), at=T0 + 3))  # back: to Ana, sticky
    wait_routed(database_url, expected_events=6 + 1 + 3 + 2)
    again = conversation_of(client, customer(0).split("@")[0])
    # Round robin's next would be Bia; sticky keeps Ana, so nothing changes hands and
    # nothing new is recorded.
    assert (again["status"], again["skm_id"]) == ("open", "skm-ana")
    history = client.get(f"/v1/conversations/{again['id']}/assignments", headers=AUTH).json()
    assert [(h["skm_id"], h["policy"]) for h in history["items"]] == [("skm-ana", "sticky")]

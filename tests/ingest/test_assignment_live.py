"""Assignment through the live server (issue #8): SKMs from the configuration, the
default policy with capacity and the waiting queue, group claims, the read API — on
SQLite and PostgreSQL; round robin's fairness with two ``wacanon serve`` processes on
one PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.api.conftest import SIM_TOKEN, bearer, sim_body, sim_message
from tests.conftest import _clean
from tests.ingest.test_durability import _free_port, _start_server
from tests.ingest.test_routing_live import ROUTING_ON, _post_all, evolution, fetch, wait_routed
from tests.routing.events import T0, text_body
from wacanon.store.tables import conversations, events

TOKEN = "token-of-shop-1-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ANA, BIA = "5511911110001", "5511911110002"
GROUP = "120363025246125888@g.us"
SKMS = [
    {"id": "skm-ana", "shopper_id": "shop-1", "name": "Ana", "wa_ids": ["+55 11 91111-0001"],
     "capacity": 1},
    {"id": "skm-bia", "shopper_id": "shop-1", "name": "Bia", "wa_ids": [BIA], "capacity": 1},
]  # fmt: skip
GROUPS_ON = {**ROUTING_ON, "WHATSAPP_GROUP_ROUTING_ENABLED": "true"}


def customer(i: int) -> str:
    return f"55119876500{i:02d}@s.whatsapp.net"


def wait_for(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def conversation_of(client: httpx.Client, chat_id: str) -> dict[str, Any]:
    items = client.get("/v1/conversations", headers=AUTH).json()["items"]
    (found,) = [c for c in items if c["chat_id"] == chat_id]
    return dict(found)


def test_capacity_the_queue_and_a_close_that_frees_room(
    make_client: Any, database_url: str
) -> None:
    client = make_client(
        env=ROUTING_ON,
        skms=SKMS,
        shoppers=[{"id": "shop-1"}],
        api_tokens=[{"token": TOKEN, "shopper_id": "shop-1"}],
    )
    for i in range(3):
        evolution(client, text_body(f"M{i}", customer(i), at=T0 + i))
    wait_routed(database_url, expected_events=3 + 3 + 2)  # messages, opened ×3, assigned ×2

    skms = client.get("/v1/skms", headers=AUTH).json()["items"]
    assert [(s["id"], s["open"], s["capacity"], s["wa_ids"]) for s in skms] == [
        ("skm-ana", 1, 1, [ANA]),
        ("skm-bia", 1, 1, [BIA]),
    ]
    third = conversation_of(client, customer(2).split("@")[0])
    assert third["skm_id"] is None
    assert third["waiting_since"] is not None
    queue = client.get("/v1/queue", params={"shopper_id": "shop-1"}, headers=AUTH).json()
    assert queue == {
        "items": [
            {
                "conversation_id": third["id"],
                "shopper_id": "shop-1",
                "waiting_since": third["waiting_since"],
            }
        ]
    }
    first = conversation_of(client, customer(0).split("@")[0])
    history = client.get(f"/v1/conversations/{first['id']}/assignments", headers=AUTH).json()
    (entry,) = history["items"]
    assert entry["skm_id"] == first["skm_id"]
    assert entry["policy"] == "default"
    assert entry["step"] == "least_loaded"
    assert entry["previous_skm_id"] is None
    assert {c["skm_id"] for c in entry["candidates"]} == {"skm-ana", "skm-bia"}

    # Closing Ana's or Bia's conversation gives the waiting one that SKM, at once.
    reply = client.post(f"/v1/conversations/{first['id']}/close", headers=AUTH)
    assert reply.status_code == 200
    assert reply.json()["closed_now"] is True
    now = conversation_of(client, third["chat_id"])
    assert now["skm_id"] == first["skm_id"]
    assert now["waiting_since"] is None
    assert client.get("/v1/queue", headers=AUTH).json() == {"items": []}
    (drained,) = client.get(f"/v1/conversations/{third['id']}/assignments", headers=AUTH).json()[
        "items"
    ]
    assert drained["reason"].startswith("waited in the queue since")
    assigned = fetch(
        database_url,
        sa.select(events.c.skm_id).where(events.c.event_type == "whatsapp.thread.assigned"),
    )
    assert len(assigned) == 3


def test_a_group_claimed_by_the_skm_who_writes_first_and_their_role(
    make_client: Any, database_url: str
) -> None:
    client = make_client(
        env=GROUPS_ON, skms=SKMS, api_tokens=[{"token": TOKEN, "shopper_id": "shop-1"}]
    )
    evolution(client, text_body("G1", GROUP, participant=customer(5), at=T0))
    evolution(client, text_body("G2", GROUP, participant=f"{ANA}@s.whatsapp.net", at=T0 + 60))
    wait_routed(database_url, expected_events=4)
    group = wait_for(
        lambda: conversation_of(client, GROUP)["skm_id"] and conversation_of(client, GROUP)
    )
    assert group["skm_id"] == "skm-ana"
    assert group["first_response_at"] == "2026-03-01T09:01:00Z"  # her message answered
    items = client.get(f"/v1/conversations/{group['id']}/events", headers=AUTH).json()["items"]
    by_id = {e["message"]["id"]: e for e in items if e.get("message")}
    assert by_id["G2"]["actor"]["role"] == "skm"
    assert by_id["G2"]["routing"]["skm_id"] == "skm-ana"
    assert by_id["G1"]["actor"]["role"] == "customer"
    (entry,) = client.get(f"/v1/conversations/{group['id']}/assignments", headers=AUTH).json()[
        "items"
    ]
    assert (entry["policy"], entry["step"]) == ("group", "entry_point")


# ------------------------------------------------------------------ two processes


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "wacanon.toml"
    skms = "".join(
        f'[[skms]]\nid = "skm-{n}"\nshopper_id = "shop-1"\nname = "{n}"\ncapacity = 50\n'
        for n in ("a", "b", "c", "d")
    )
    config.write_text(
        f'database_url = "{url}"\ndefault_shopper_id = "shop-1"\n'
        f'spool_path = "{tmp_path / "spool"}"\nflag_refresh_seconds = 0.5\n'
        f'[providers.simulated]\ntoken = "{SIM_TOKEN}"\n' + skms
    )
    return config


@pytest.fixture
def two_servers(postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    _clean(postgres_server)
    monkeypatch.setenv("WHATSAPP_ROUTING_ENABLED", "true")
    monkeypatch.setenv("WHATSAPP_ASSIGNMENT_POLICY", "round_robin")
    config = _config(tmp_path, postgres_server)
    ports = [_free_port(), _free_port()]
    servers = [_start_server(config, port, tmp_path / f"server-{port}.log") for port in ports]
    yield [f"http://127.0.0.1:{port}" for port in ports]
    for server in servers:
        server.terminate()
        server.wait(20)


def test_round_robin_over_two_servers_is_fair_and_never_exceeds_capacity(
    two_servers: list[str], postgres_server: str
) -> None:
    posts = [
        (
            two_servers[i % 2],
            "/webhooks/simulated",
            sim_body(sim_message(f"RR-{i:03d}", text=f"Oi {i}", sender=f"55119700{i:05d}")),
            bearer(),
        )
        for i in range(100)
    ]
    assert asyncio.run(_post_all(posts)) == [200] * 100
    wait_routed(postgres_server, expected_events=300, timeout=30)
    rows = fetch(postgres_server, sa.select(conversations.c.skm_id))
    counts: dict[str, int] = {}
    for (skm,) in rows:
        counts[skm] = counts.get(skm, 0) + 1
    assert counts == {"skm-a": 25, "skm-b": 25, "skm-c": 25, "skm-d": 25}
    assigned = fetch(
        postgres_server,
        sa.select(sa.func.count()).where(events.c.event_type == "whatsapp.thread.assigned"),
    )
    assert assigned == [(100,)]  # one assignment per conversation
    # 150 more customers at once over both servers: room for 100 more (capacity 50 each):
    # nobody goes above it, the other 50 wait, and each conversation is assigned once.
    more = [
        (
            two_servers[i % 2],
            "/webhooks/simulated",
            sim_body(sim_message(f"CAP-{i:03d}", text=f"Oi {i}", sender=f"55119800{i:05d}")),
            bearer(),
        )
        for i in range(150)
    ]
    assert asyncio.run(_post_all(more)) == [200] * 150
    wait_routed(postgres_server, expected_events=300 + 150 * 2 + 100, timeout=30)
    c = conversations.c
    load = dict(
        fetch(
            postgres_server,
            sa.select(c.skm_id, sa.func.count())
            .where(c.status == "open", c.skm_id.is_not(None))
            .group_by(c.skm_id),
        )
    )
    assert load == {"skm-a": 50, "skm-b": 50, "skm-c": 50, "skm-d": 50}
    waiting = fetch(postgres_server, sa.select(sa.func.count()).where(c.waiting_since.is_not(None)))
    assert waiting == [(50,)]
    keys = fetch(
        postgres_server,
        sa.select(events.c.conversation_id, sa.func.count())
        .where(events.c.event_type == "whatsapp.thread.assigned")
        .group_by(events.c.conversation_id),
    )
    assert len(keys) == 200
    assert {n for _, n in keys} == {1}


def _mention(message_id: str, at: int, mentioned: str) -> dict[str, Any]:
    body = text_body(message_id, GROUP, participant=customer(6), at=at)
    body["data"]["message"] = {
        "extendedTextMessage": {
            "text": f"@{mentioned} pode me ajudar com o pedido?",
            "contextInfo": {"mentionedJid": [f"{mentioned}@s.whatsapp.net"]},
        }
    }
    body["data"]["messageType"] = "extendedTextMessage"
    return body


def test_a_customer_mention_routes_the_group_to_that_skm(
    make_client: Any, database_url: str
) -> None:
    client = make_client(
        env=GROUPS_ON, skms=SKMS, api_tokens=[{"token": TOKEN, "shopper_id": "shop-1"}]
    )
    evolution(client, text_body("H1", GROUP, participant=f"{ANA}@s.whatsapp.net", at=T0))
    evolution(client, _mention("H2", T0 + 30, BIA))
    wait_routed(database_url, expected_events=2 + 1 + 2)
    group = wait_for(lambda: (g := conversation_of(client, GROUP))["skm_id"] == "skm-bia" and g)
    history = client.get(f"/v1/conversations/{group['id']}/assignments", headers=AUTH).json()
    assert [(h["step"], h["skm_id"], h["previous_skm_id"]) for h in history["items"]] == [
        ("entry_point", "skm-ana", None),
        ("mention", "skm-bia", "skm-ana"),
    ]


def test_with_group_routing_off_groups_are_kept_but_nobody_is_assigned(
    make_client: Any, database_url: str
) -> None:
    client = make_client(
        env=ROUTING_ON, skms=SKMS, api_tokens=[{"token": TOKEN, "shopper_id": "shop-1"}]
    )
    evolution(client, text_body("K1", GROUP, participant=f"{ANA}@s.whatsapp.net", at=T0))
    evolution(client, _mention("K2", T0 + 30, BIA))
    wait_routed(database_url, expected_events=2 + 1)
    group = conversation_of(client, GROUP)
    assert (group["status"], group["skm_id"]) == ("open", None)
    history = client.get(f"/v1/conversations/{group['id']}/assignments", headers=AUTH).json()
    assert history == {"items": []}

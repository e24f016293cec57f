"""Conversations through the live server: webhooks in, the routing worker's result in the
database — on SQLite and PostgreSQL, and with two ``wacanon serve`` processes on one
PostgreSQL for the races of issue #7 §2."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tests.api.conftest import (
    EVOLUTION_KEY,
    SIM_TOKEN,
    bearer,
    bridge_signature,
    hub_signature,
    make_settings,
    sim_body,
    sim_message,
)
from tests.conftest import _clean
from tests.golden import FIXTURES, cases
from tests.ingest.test_durability import _free_port, _start_server
from tests.routing.events import (
    LID,
    PHONE,
    cloud_change,
    cloud_text,
    group_body,
    status_body,
    text_body,
)
from wacanon.ingest.flag_cache import FlagCache
from wacanon.ingest.projector import Router
from wacanon.simulate import SimulationOptions, expected_conversations, generate
from wacanon.store.database import create_engine
from wacanon.store.repository import set_flag
from wacanon.store.tables import conversations, events, identities, messages, participants

ROUTING_ON = {"WHATSAPP_CANONICAL_SHADOW_MODE": "false", "WHATSAPP_ROUTING_ENABLED": "true"}
PN = f"{PHONE}@s.whatsapp.net"
LJ = f"{LID}@lid"


def evolution(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post(
        "/webhooks/evolution",
        content=orjson.dumps(body),
        headers={"apikey": EVOLUTION_KEY, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


def wait_routed(
    url: str, expected_events: int, timeout: float = 10.0, *, passed_over_too: bool = False
) -> None:
    """Until ``expected_events`` are stored and none waits for routing (nor, with
    ``passed_over_too``, is passed over)."""
    waiting = events.c.routed_seq.is_(None)
    if passed_over_too:
        waiting = sa.or_(waiting, events.c.routed_seq == 0)
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as connection:  # each result read whole at once: a
                # half-read SQLite cursor would keep its snapshot for the next poll
                total = connection.execute(
                    sa.select(sa.func.count()).select_from(events)
                ).scalar_one()
                pending = connection.execute(sa.select(sa.func.count()).where(waiting)).scalar_one()
                done = total >= expected_events and pending == 0
            if done:
                return
            if time.monotonic() > deadline:
                raise AssertionError("events were not routed in time")
            time.sleep(0.05)
    finally:
        engine.dispose()


def snapshot(url: str) -> dict[str, Any]:
    """Everything routing derives, without what differs by construction between runs
    (the order numbers and row ids it gave, the lifecycle events' receipt time)."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return {
                "conversations": sorted(tuple(r) for r in c.execute(sa.select(conversations))),
                "participants": sorted(tuple(r) for r in c.execute(sa.select(participants))),
                "messages": sorted(tuple(r) for r in c.execute(sa.select(messages))),
                "identities": sorted(tuple(r) for r in c.execute(sa.select(identities))),
                "events": sorted(
                    tuple(r)
                    for r in c.execute(
                        sa.select(
                            events.c.idempotency_key,
                            events.c.event_type,
                            events.c.occurred_at,
                            events.c.conversation_id,
                            events.c.thread_key,
                        )
                    )
                ),
            }
    finally:
        engine.dispose()


def router_of(url: str, tmp_path: Path) -> tuple[Router, sa.Engine]:
    """A :class:`Router` as ``wacanon conversations`` builds one (routing on); dispose
    of the engine after use."""
    engine = create_engine(url)
    flags = FlagCache(engine, ROUTING_ON, 1.0)
    flags.refresh()
    return Router(engine, make_settings(url, tmp_path), flags.for_shopper), engine


def fetch(url: str, query: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(query))
    finally:
        engine.dispose()


def test_lid_then_phone_merge_and_a_status_before_its_message(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    client = make_client(env=ROUTING_ON)
    evolution(client, text_body("M1", LJ))  # the customer, known by a LID only
    evolution(client, text_body("M2", PN, at=1772355700))  # the phone alone: not linked yet
    evolution(client, status_body("M9", PN, "READ", at=1772355750))  # before its message
    evolution(client, text_body("M9", PN, from_me=True, at=1772355740))
    evolution(client, text_body("M3", PN, LJ, at=1772355800))  # the link: a merge
    wait_routed(database_url, expected_events=5)
    rows = fetch(database_url, sa.select(conversations).order_by(conversations.c.opened_at))
    assert [(r.status, r.thread_key) for r in rows] == [
        ("open", f"whatsapp:lid:{LID}|shopper:shop-1|group:null"),
        ("merged", f"whatsapp:{PHONE}|shopper:shop-1|group:null"),
    ]
    keep = rows[0].id
    assert rows[1].merged_into == keep
    stored = fetch(database_url, sa.select(events.c.event_type, events.c.conversation_id))
    assert {cid for _, cid in stored} == {keep}  # every event, lifecycle ones included
    types = sorted(t for t, _ in stored if t.startswith("whatsapp.conversation."))
    assert types == [
        "whatsapp.conversation.merged",
        "whatsapp.conversation.opened",
        "whatsapp.conversation.opened",
    ]
    index = {r.message_id: r for r in fetch(database_url, sa.select(messages))}
    assert set(index) == {"M1", "M2", "M3", "M9"}
    assert {r.conversation_id for r in index.values()} == {keep}
    assert (index["M9"].status, index["M9"].direction) == ("read", "outbound")
    router, engine = router_of(database_url, tmp_path)
    try:
        router.close_idle()  # what the server does within a minute: these are old
        live = snapshot(database_url)
        router.rebuild()  # one batch now, where live routing took several
    finally:
        engine.dispose()
    assert snapshot(database_url) == live


def test_turning_routing_on_later_routes_the_past(make_client: Any, database_url: str) -> None:
    client = make_client(env={"WHATSAPP_CANONICAL_SHADOW_MODE": "false"})  # routing off
    evolution(client, text_body("M1", PN))
    evolution(client, text_body("M2", PN, at=1772355700))
    time.sleep(0.3)
    passed = fetch(database_url, sa.select(events.c.routed_seq, events.c.conversation_id))
    assert passed == [(0, None), (0, None)]  # stored, routing fields empty
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            set_flag(connection, "shop-1", "WHATSAPP_ROUTING_ENABLED", "true")
    finally:
        engine.dispose()
    wait_routed(database_url, expected_events=2, timeout=6, passed_over_too=True)
    (conversation,) = fetch(database_url, sa.select(conversations))
    rows = fetch(database_url, sa.select(events.c.conversation_id))
    assert {cid for (cid,) in rows} == {conversation.id}


# ------------------------------------------------------------------ two processes


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "wacanon.toml"
    config.write_text(
        f'database_url = "{url}"\ndefault_shopper_id = "shop-1"\n'
        f'spool_path = "{tmp_path / "spool"}"\nflag_refresh_seconds = 0.5\n'
        f'[providers.simulated]\ntoken = "{SIM_TOKEN}"\n'
        f'[providers.evolution]\napi_key = "{EVOLUTION_KEY}"\n'
    )
    return config


async def _post_all(posts: list[tuple[str, str, bytes, dict[str, str]]]) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as client:
        replies = await asyncio.gather(
            *(client.post(base + path, content=body, headers=h) for base, path, body, h in posts)
        )
    return [r.status_code for r in replies]


@pytest.fixture
def two_servers(postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    _clean(postgres_server)
    monkeypatch.setenv("WHATSAPP_ROUTING_ENABLED", "true")
    config = _config(tmp_path, postgres_server)
    ports = [_free_port(), _free_port()]
    servers = [_start_server(config, port, tmp_path / f"server-{port}.log") for port in ports]
    yield [f"http://127.0.0.1:{port}" for port in ports]
    for server in servers:
        server.terminate()
        server.wait(20)


def test_fifty_concurrent_first_messages_over_two_servers_give_one_conversation(
    two_servers: list[str], postgres_server: str
) -> None:
    posts = [
        (
            two_servers[i % 2],
            "/webhooks/simulated",
            sim_body(sim_message(f"FIRST-{i:02d}", text=f"Oi {i} 👟", sender="5511977776666")),
            bearer(),
        )
        for i in range(50)
    ]
    assert asyncio.run(_post_all(posts)) == [200] * 50
    wait_routed(postgres_server, expected_events=51)
    (conversation,) = fetch(postgres_server, sa.select(conversations))
    assert conversation.thread_key == "whatsapp:5511977776666|shopper:shop-1|group:null"
    rows = fetch(postgres_server, sa.select(events.c.event_type, events.c.conversation_id))
    assert {cid for _, cid in rows} == {conversation.id}
    assert [t for t, _ in rows].count("whatsapp.conversation.opened") == 1


def test_an_album_and_lid_phone_twins_concurrently_give_one_conversation(
    two_servers: list[str], postgres_server: str
) -> None:
    headers = {"apikey": EVOLUTION_KEY, "Content-Type": "application/json"}
    bodies = [text_body(f"ALBUM-{i}", PN, LJ, at=1772355600 + i) for i in range(10)]
    bodies.append(text_body("TWIN-LID", LJ, at=1772355611))  # addressed by its LID only
    bodies.append(text_body("TWIN-PN", PN, LJ, at=1772355611))  # and its phone twin
    posts = [
        (two_servers[i % 2], "/webhooks/evolution", orjson.dumps(b), headers)
        for i, b in enumerate(bodies)
    ]
    assert asyncio.run(_post_all(posts)) == [200] * 12
    wait_routed(postgres_server, expected_events=13)
    live = fetch(
        postgres_server, sa.select(conversations).where(conversations.c.status != "merged")
    )
    assert len(live) == 1
    rows = fetch(postgres_server, sa.select(events.c.conversation_id))
    assert {cid for (cid,) in rows} == {live[0].id}


def cloud(client: httpx.Client, body: dict[str, Any]) -> None:
    raw = orjson.dumps(body)
    response = client.post("/webhooks/cloud_api", content=raw, headers=hub_signature(raw))
    assert response.status_code == 200, response.text


BSUID, NEW_BSUID = "BR.1502576394655843", "BR.7730019284756612"


def test_bsuid_then_phone_a_bsuid_change_groups_and_reopen_over_http(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    client = make_client(env=ROUTING_ON)
    cloud(client, cloud_text("wamid.U1", 1772366400, from_user_id=BSUID))
    cloud(client, cloud_text("wamid.U2", 1772366460, **{"from": PHONE,
                                         "from_user_id": BSUID}))  # fmt: skip
    cloud(client, cloud_text("wamid.U3", 1772366520, **{"from": PHONE}))
    update = {"user_id": {"previous": BSUID, "current": NEW_BSUID}, "timestamp": "1772366580"}
    cloud(client, cloud_change("user_id_update", {"user_id_update": [update]}))
    cloud(client, cloud_text("wamid.U4", 1772366640, from_user_id=NEW_BSUID))
    member = "5521998765432@s.whatsapp.net"
    group = "120363025246125888@g.us"
    evolution(client, group_body(group, "add", [member], at=1772366700))
    evolution(client, text_body("G1", group, participant=member, at=1772366710))
    evolution(client, group_body(group, "remove", [member], at=1772366720))
    wait_routed(database_url, expected_events=8)
    rows = fetch(database_url, sa.select(conversations).order_by(conversations.c.opened_at))
    (customer,) = [r for r in rows if r.chat_type == "private"]
    assert customer.thread_key == f"whatsapp:bsuid:{BSUID}|shopper:shop-1|group:null"
    assert {r.status for r in rows} == {"open"}
    mine = fetch(database_url, sa.select(events.c.provider_message_id).where(
        events.c.conversation_id == customer.id, events.c.provider_message_id.is_not(None)
    ))  # fmt: skip
    assert {m for (m,) in mine} == {"wamid.U1", "wamid.U2", "wamid.U3", "wamid.U4"}
    (grouped,) = [r for r in rows if r.chat_type == "group"]
    assert grouped.thread_key == f"whatsapp:group:{group}|shopper:shop-1"
    (left,) = fetch(database_url, sa.select(participants).where(
        participants.c.conversation_id == grouped.id, participants.c.wa_id == "5521998765432"
    ))  # fmt: skip
    assert left.left_at is not None
    # reopen after close: closed by the API's command, a later message opens it again
    router, engine = router_of(database_url, tmp_path)
    try:
        assert router.close_conversation(customer.id)
    finally:
        engine.dispose()
    cloud(client, cloud_text("wamid.U5", int(time.time()) + 5, **{"from": PHONE}))
    wait_routed(database_url, expected_events=10)
    (again,) = fetch(database_url, sa.select(conversations).where(
        conversations.c.id == customer.id
    ))  # fmt: skip
    assert (again.status, again.opens) == ("open", 2)


def test_every_fixture_of_every_provider_routes_without_a_stuck_event(
    make_client: Any, database_url: str
) -> None:
    """Every realistic payload we have (LIDs, BSUIDs, groups, statuses, contacts, calls,
    malformed items), through the live server with routing on: every stored event leaves
    the queue, and every one that names its chat has a conversation."""
    client = make_client(env=ROUTING_ON)
    headers = {
        "cloud_api": hub_signature,
        "evolution": lambda _: {"apikey": EVOLUTION_KEY, "Content-Type": "application/json"},
        "baileys": bridge_signature,
        "simulated": lambda _: bearer(),
    }
    stored = 0
    for provider, sign in headers.items():
        for case in cases(provider):
            body = case.read_bytes()
            reply = client.post(f"/webhooks/{provider}", content=body, headers=sign(body))
            assert reply.status_code in (200, 400), (case.name, reply.text)
            if reply.status_code == 200:
                stored += reply.json()["events"]
    assert stored > 100, FIXTURES
    wait_routed(database_url, expected_events=stored, timeout=30)
    unrouted = fetch(
        database_url,
        sa.select(events.c.event_type, events.c.chat_id, events.c.provider_event).where(
            events.c.conversation_id.is_(None),
            events.c.routed_seq != 0,
            events.c.chat_id != "unknown",
            events.c.event_type.not_in(["whatsapp.connection.updated", "whatsapp.contact.updated"]),
        ),
    )
    assert unrouted == [], unrouted


def test_a_rebuild_run_while_two_servers_route_live_traffic_loses_nothing(
    two_servers: list[str], postgres_server: str, tmp_path: Path
) -> None:
    """Two `wacanon serve` processes route a simulated stream while `wacanon conversations
    rebuild`, a third process, rebuilds everything in the middle of it: every event ends
    routed (none queued, none left unconfirmed), each customer and group has its one
    conversation, and no lifecycle event is stored twice."""
    options = SimulationOptions(count=600, seed=11, shoppers=2, customers_per_shopper=40)
    bodies = list(generate(options))
    half = len(bodies) // 2

    def post(part: list[bytes]) -> list[int]:
        return asyncio.run(
            _post_all(
                [
                    (two_servers[i % 2], "/webhooks/simulated", body, bearer())
                    for i, body in enumerate(part)
                ]
            )
        )

    assert set(post(bodies[:half])) == {200}
    rebuild = subprocess.Popen(
        [sys.executable, "-m", "wacanon", "conversations", "rebuild",
         "--config", str(tmp_path / "wacanon.toml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **ROUTING_ON},
    )  # fmt: skip
    replies = post(bodies[half:])
    out, err = rebuild.communicate(timeout=120)
    assert rebuild.returncode == 0, err.decode()
    assert out.decode().startswith("rebuilt 1 shopper(s) from "), out
    assert set(replies) == {200}
    stored = fetch(postgres_server, sa.select(sa.func.count()).select_from(events))[0][0]
    wait_routed(postgres_server, expected_events=stored, timeout=60)
    leftovers = fetch(postgres_server, sa.select(events.c.id).where(events.c.routed_seq < 1))
    assert leftovers == []
    live = fetch(
        postgres_server,
        sa.select(sa.func.count()).where(conversations.c.status != "merged"),
    )[0][0]
    assert live == sum(expected_conversations(options).values())  # one shopper owns all here
    keys = fetch(
        postgres_server,
        sa.select(events.c.idempotency_key).where(events.c.provider_event.like("wacanon.%")),
    )
    assert len(keys) == len(set(keys))

"""Runtime flag overrides reach a running server within seconds; signals fire once, after commit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import bearer, sim_body, sim_message
from tests.api.test_webhooks import table_counts
from wacanon.ingest import signals
from wacanon.store.database import create_engine
from wacanon.store.repository import set_flag, unset_flag


@pytest.fixture
def received() -> Iterator[dict[str, list[Any]]]:
    seen: dict[str, list[Any]] = {"stored": [], "duplicate": [], "failed": []}

    def stored(sender: str, event: Any, **_: Any) -> None:
        seen["stored"].append(event)

    def duplicate(sender: str, event: Any, **_: Any) -> None:
        seen["duplicate"].append(event)

    def failed(sender: str, errors: Any, **_: Any) -> None:
        seen["failed"].append(errors)

    signals.event_stored.connect(stored)
    signals.duplicate_received.connect(duplicate)
    signals.normalization_failed.connect(failed)
    yield seen
    signals.event_stored.disconnect(stored)
    signals.duplicate_received.disconnect(duplicate)
    signals.normalization_failed.disconnect(failed)


def test_signals_fire_once_per_event_and_never_in_shadow(
    make_client: Any, received: dict[str, list[Any]]
) -> None:
    client = make_client()
    body = sim_body(sim_message("SIM-1"), sim_message("SIM-2"), {"type": "teleport"})
    client.post("/webhooks/simulated", content=body, headers=bearer())
    client.post("/webhooks/simulated", content=body, headers=bearer())
    assert sorted(e.source.provider_message_id for e in received["stored"]) == ["SIM-1", "SIM-2"]
    assert len(received["duplicate"]) == 2
    assert len(received["failed"]) == 2
    shadow = make_client(env={})
    shadow.post("/webhooks/simulated", content=sim_body(sim_message("SIM-3")), headers=bearer())
    assert len(received["stored"]) == 2


def test_a_raising_receiver_is_counted_and_breaks_nothing(
    make_client: Any, received: dict[str, list[Any]], database_url: str
) -> None:
    def broken(sender: str, **_: Any) -> None:
        raise RuntimeError("subscriber bug")

    signals.event_stored.connect(broken)
    try:
        client = make_client()
        answer = client.post(
            "/webhooks/simulated", content=sim_body(sim_message("SIM-1")), headers=bearer()
        )
    finally:
        signals.event_stored.disconnect(broken)
    assert answer.status_code == 200
    assert len(received["stored"]) == 1
    assert table_counts(database_url)["events"] == 1
    metrics = client.get("/metrics").text
    assert 'wacanon_signal_receiver_failures_total{signal="event_stored"} 1.0' in metrics


def test_runtime_override_is_obeyed_without_restart(make_client: Any, database_url: str) -> None:
    client = make_client()  # shadow off through the environment
    engine = create_engine(database_url)
    with engine.begin() as connection:
        set_flag(connection, "shop-1", "WHATSAPP_CANONICAL_EVENTS_ENABLED", "false")
    deadline = time.monotonic() + 5
    outcome = None
    n = 0
    while time.monotonic() < deadline:
        n += 1
        body = sim_body(sim_message(f"SIM-R{n}"))
        outcome = client.post("/webhooks/simulated", content=body, headers=bearer()).json()
        if outcome["events"] == 0:
            break
        time.sleep(0.1)
    assert outcome is not None
    assert outcome["events"] == 0, "the override was not picked up in 5 s"
    other_shopper = client.post(
        "/webhooks/simulated",
        content=sim_body(sim_message("SIM-X"), account="sim-store-2"),
        headers=bearer(),
    ).json()
    assert other_shopper["events"] == 1
    with engine.begin() as connection:
        unset_flag(connection, "shop-1", "WHATSAPP_CANONICAL_EVENTS_ENABLED")
    engine.dispose()

"""The rollback drill (issue #9 §4) with two real ``wacanon serve`` processes on one
PostgreSQL and the team's legacy handler up: enable → ingest → rollback → ingest more →
resume → ingest more. Every event exactly once, every conversation and assignment as a
rebuild gives them, and the legacy handler got every webhook once, in order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tests.api.conftest import SIM_TOKEN, bearer
from tests.api.test_legacy import Legacy
from tests.conftest import _clean
from tests.ingest.test_durability import _free_port, _start_server
from tests.ingest.test_routing_live import fetch
from tests.test_cli_service import wacanon
from wacanon.ingest.replay import ReplayTotals
from wacanon.providers.registry import normalize
from wacanon.rollout import drill
from wacanon.rollout.drill import OPTIONS, conversation_rows, expected_keys, stored_keys
from wacanon.simulate import account_shoppers, expected_conversations, generate
from wacanon.store import rollout as records
from wacanon.store.database import create_engine
from wacanon.store.tables import events

# The drill's own stream (wacanon.rollout.drill), here through real `serve` processes.
PERSIST = {"WHATSAPP_CANONICAL_SHADOW_MODE": "false"}  # what _start_server gives the servers


def drill_config(tmp_path: Path, url: str, legacy_url: str) -> Path:
    accounts = "".join(
        f'[[accounts]]\nprovider = "simulated"\naccount_id = "{account}"\n'
        f'shopper_id = "{shopper}"\n'
        for account, shopper in account_shoppers(OPTIONS).items()
    )
    shoppers = "".join(
        f'[[shoppers]]\nid = "{shopper}"\nclose_after_hours = 100000\n'
        f'[[skms]]\nid = "{shopper}-ana"\nshopper_id = "{shopper}"\nname = "Ana"\n'
        f'wa_ids = ["55119000{n}0001"]\ncapacity = 4\n'
        f'[[skms]]\nid = "{shopper}-bia"\nshopper_id = "{shopper}"\nname = "Bia"\n'
        f'wa_ids = ["55119000{n}0002"]\ncapacity = 4\n'
        for n, shopper in enumerate(sorted(set(account_shoppers(OPTIONS).values())))
    )
    config = tmp_path / "wacanon.toml"
    config.write_text(
        f'database_url = "{url}"\nspool_path = "{tmp_path / "spool"}"\n'
        "flag_refresh_seconds = 0.5\n"
        f'[legacy]\nsimulated = "{legacy_url}/legacy"\n'
        f'[providers.simulated]\ntoken = "{SIM_TOKEN}"\n{accounts}{shoppers}'
    )
    return config


@pytest.fixture
def legacy() -> Iterator[Legacy]:
    server = Legacy()
    yield server
    server.close()


def post_in_order(servers: list[str], bodies: list[bytes]) -> None:
    """One after another, alternating servers: the order the legacy handler must see."""
    with httpx.Client(timeout=30) as client:
        for i, body in enumerate(bodies):
            reply = client.post(
                f"{servers[i % 2]}/webhooks/simulated", content=body, headers=bearer()
            )
            assert reply.status_code == 202, reply.text  # the legacy handler's own answer


def occurrences(bodies: list[bytes]) -> int:
    shoppers = account_shoppers(OPTIONS)
    return sum(len(normalize("simulated", b, shopper_of=shoppers.get).events) for b in bodies)


def wait_routed(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while fetch(url, sa.select(sa.func.count()).where(events.c.routed_seq.is_(None)))[0][0]:
        assert time.monotonic() < deadline, "routing did not catch up"
        time.sleep(0.1)


def test_rollback_and_resume_lose_nothing_over_two_servers(
    postgres_server: str, tmp_path: Path, legacy: Legacy
) -> None:
    _clean(postgres_server)
    engine = create_engine(postgres_server)
    config = drill_config(tmp_path, postgres_server, legacy.url)
    cli = ("--config", str(config))
    bodies = list(generate(OPTIONS))
    first, during, after = bodies[:100], bodies[100:180], bodies[180:]
    ports = [_free_port(), _free_port()]
    processes = [_start_server(config, port, tmp_path / f"serve-{port}.log") for port in ports]
    servers = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        enabled = wacanon(
            tmp_path, "rollout", "apply", "--phase", "3", "--percent", "100", *cli, env=PERSIST
        )
        assert enabled.returncode == 0, enabled.stderr
        time.sleep(1.2)  # two refreshes of 0.5 s
        post_in_order(servers, first)
        wait_routed(postgres_server)
        before_rollback = stored_keys(engine)
        assert set(before_rollback) == expected_keys(first)

        rolled = wacanon(tmp_path, "rollback", *cli, env=PERSIST)
        assert rolled.returncode == 0, rolled.stderr
        assert "WHATSAPP_CANONICAL_EVENTS_ENABLED: true → false" in rolled.stdout
        assert "WHATSAPP_ROUTING_ENABLED: true → false" in rolled.stdout
        time.sleep(1.2)
        post_in_order(servers, during)
        assert stored_keys(engine) == before_rollback  # journaled and forwarded only
        journaled = fetch(
            postgres_server,
            sa.text("SELECT count(*) FROM webhook_journal WHERE outcome = 'disabled'"),
        )
        assert journaled == [(len(during),)]

        resumed = wacanon(tmp_path, "rollout", "resume", *cli, env=PERSIST)
        assert resumed.returncode == 0, resumed.stderr
        assert f"{len(during)} webhook(s) replayed" in resumed.stdout
        new_during = len(expected_keys(during) - expected_keys(first))
        repeats = occurrences(during) - new_during  # the stream's own redeliveries
        assert f"{new_during} new event(s), {repeats} already stored" in resumed.stdout
        again = wacanon(tmp_path, "rollout", "resume", *cli, env=PERSIST)
        assert again.returncode == 1
        assert "no rollback in force" in again.stderr

        post_in_order(servers, after)
        wait_routed(postgres_server)
    finally:
        for process in processes:
            process.terminate()
            process.wait(20)

    keys = stored_keys(engine)
    assert len(keys) == len(set(keys))  # every event exactly once
    assert set(keys) == expected_keys(bodies)
    live = conversation_rows(engine)
    per_shopper: dict[str, int] = {}
    for row in live:
        if row[3] != "merged":
            per_shopper[row[1]] = per_shopper.get(row[1], 0) + 1
    assert per_shopper == expected_conversations(OPTIONS)
    assert any(row[4] is not None for row in live)  # assignments happened
    rebuilt = wacanon(tmp_path, "conversations", "rebuild", *cli, env=PERSIST)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert conversation_rows(engine) == live
    assert [data for _, _, data in legacy.received] == bodies  # every webhook once, in order
    assert {path for path, _, _ in legacy.received} == {"/legacy"}
    engine.dispose()


def test_the_drill_command_on_sqlite_and_on_an_empty_postgresql(
    postgres_server: str, tmp_path: Path
) -> None:
    scratch = wacanon(tmp_path, "rollout", "drill", "--json")
    assert scratch.returncode == 0, scratch.stderr
    figures = orjson.loads(scratch.stdout)
    assert figures["ok"] is True
    assert figures["webhooks"] == 240
    assert figures["duplicates"] == 0
    assert figures["events"] == len(expected_keys(list(generate(OPTIONS))))
    assert figures["replayed_webhooks"] == 80
    assert "... rolled back every shopper" in scratch.stderr
    _clean(postgres_server)
    on_pg = wacanon(tmp_path, "rollout", "drill", "--database-url", postgres_server)
    assert on_pg.returncode == 0, on_pg.stderr
    assert "nothing lost, nothing stored twice" in on_pg.stdout
    again = wacanon(tmp_path, "rollout", "drill", "--database-url", postgres_server)
    assert again.returncode == 2  # it holds the first drill's webhooks now
    assert "needs an empty database" in again.stderr


def test_the_drill_fails_loudly_when_a_resume_loses_the_rollbacks_webhooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def restore_only(engine: sa.Engine, settings: Any, env: Any, record: Any) -> Any:
        with engine.begin() as connection:
            records.restore(connection, record)  # flags back, nothing replayed
        return SimpleNamespace(totals=ReplayTotals())

    monkeypatch.setattr(drill, "resume", restore_only)
    report = drill.run_drill()
    assert not report.ok
    assert any(f.startswith("events: ") and "lost" in f for f in report.failures)

"""``wacanon rollout check`` (issue #9 §2) against a live server on SQLite and
PostgreSQL: each phase passes when its flags are set and the server is healthy, and each
✗ is provoked on purpose — wrong flags, a shopper override that makes the probe stored in
shadow, a missing index, a schema behind head, a silent legacy handler, a fact stored
twice, normalization failures, slow webhooks, routing off for the probe. The probe's
rows are always cleaned up and it never reaches the legacy handler or ``/metrics``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from tests.api.conftest import SIM_TOKEN, bearer, make_settings, sim_body, sim_message
from tests.api.test_legacy import Legacy
from tests.ingest.test_routing_live import fetch
from tests.routing.events import normalized
from tests.test_cli_rollout import CLEAN_ENV
from tests.test_cli_service import wacanon
from wacanon.config import LoadedConfig
from wacanon.flags import CANONICAL_SHADOW_MODE, ROUTING_ENABLED
from wacanon.ingest.pipeline import event_row
from wacanon.probe import PROBE
from wacanon.rollout.apply import apply_step
from wacanon.rollout.check import FAIL, OK, Check, Item
from wacanon.rollout.phases import Step
from wacanon.store.database import alembic_config, create_engine
from wacanon.store.repository import set_flag, write_events
from wacanon.store.tables import conversations, events, skms, webhook_journal

NO_FLAGS: dict[str, str] = {}  # the server's environment: the defaults (Phase 0)


def apply(url: str, step: Step) -> None:
    """What `wacanon rollout apply` writes, written directly."""
    engine = create_engine(url)
    with engine.begin() as connection:
        apply_step(connection, step, env=NO_FLAGS)
    engine.dispose()


def run_check(
    client: httpx.Client, url: str, tmp_path: Path, phase: int, **overrides: Any
) -> dict[str, Item]:
    settings = make_settings(url, tmp_path, **overrides)
    engine = create_engine(url)
    try:
        check = Check(
            phase,
            LoadedConfig(settings, None),
            engine,
            str(client.base_url),
            900,
            SIM_TOKEN,
            env={},
            routed_within=3,
        )
        return {item.name: item for item in check.run()}
    finally:
        engine.dispose()


def failed(items: dict[str, Item]) -> set[str]:
    return {name for name, item in items.items() if item.status == FAIL}


def probe_rows(url: str) -> list[int]:
    return [
        fetch(url, sa.select(sa.func.count()).select_from(t).where(t.c.shopper_id == PROBE))[0][0]
        for t in (events, webhook_journal, conversations, skms)
    ]


def wait_for_flags() -> None:
    import time

    time.sleep(0.5)  # the server re-reads overrides every 0.2 s


def test_phase_0_passes_and_the_probe_leaves_nothing(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    client = make_client(env=NO_FLAGS)
    items = run_check(client, database_url, tmp_path, 0)
    assert failed(items) == set()
    assert items["shadow mode: nothing written"].measured.startswith("0 event row(s)")
    assert items["idempotency: the same probe twice gives one key"].status == OK
    assert items["legacy handler answering"].status == "skip"
    assert probe_rows(database_url) == [0, 0, 0, 0]
    assert 'provider="simulated"' not in client.get("/metrics").text  # probes: not in /metrics
    window = client.get("/metrics/window", params={"seconds": 60}).json()
    assert window["probes"] == 2


def test_phase_2_passes_with_its_conversation_and_skm(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    apply(database_url, Step(2, None, frozenset({"shop-beta"})))
    client = make_client(env=NO_FLAGS)
    items = run_check(client, database_url, tmp_path, 2)
    assert failed(items) == set()
    assert items["SKM assigned to it"].measured.startswith("wacanon-probe-skm")
    assert items["signals: one per stored event"].measured.startswith("1 for the first probe")
    assert probe_rows(database_url) == [0, 0, 0, 0]
    assert fetch(database_url, sa.select(sa.func.count()).select_from(events)) == [(0,)]


def test_wrong_flags_and_a_probe_stored_in_shadow_are_each_a_cross(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    client = make_client(env=NO_FLAGS)
    assert failed(run_check(client, database_url, tmp_path, 1)) == {
        "flags as Phase 1 sets them",
        "comparative logs enabled",
    }
    engine = create_engine(database_url)
    with engine.begin() as connection:  # the global flags say shadow; one override says no
        set_flag(connection, PROBE, CANONICAL_SHADOW_MODE, "false")
    engine.dispose()
    wait_for_flags()
    items = run_check(client, database_url, tmp_path, 0)
    assert failed(items) == {"shadow mode: nothing written", "signals: none in shadow mode"}
    assert items["shadow mode: nothing written"].measured.startswith("1 event row(s)")
    assert probe_rows(database_url) == [0, 0, 0, 0]


def test_routing_off_for_the_probe_is_a_cross_for_its_conversation(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    apply(database_url, Step(3, 100.0))
    engine = create_engine(database_url)
    with engine.begin() as connection:
        set_flag(connection, PROBE, ROUTING_ENABLED, "false")
    engine.dispose()
    client = make_client(env=NO_FLAGS)
    items = run_check(client, database_url, tmp_path, 3)
    assert failed(items) == {"conversation created for the probe", "SKM assigned to it"}
    assert items["conversation created for the probe"].measured == "none after 3 s"


def test_a_missing_index_a_silent_legacy_handler_and_a_fact_stored_twice(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    apply(database_url, Step(3, 100.0))
    silent = "http://127.0.0.1:9/legacy"  # discard port: nobody answers
    client = make_client(env=NO_FLAGS, legacy={"simulated": silent})
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP INDEX ix_events_thread_key"))
        (event,) = normalized("simulated", orjson.loads(sim_body(sim_message("TWICE-1"))))
        first = event.model_copy(update={"received_at": datetime.now(UTC)})  # in the window
        twin = first.model_copy(
            update={"idempotency_key": "f" * 64, "event_id": first.event_id[:-1] + "0"}
        )
        write_events(connection, [event_row(first), event_row(twin)])
    engine.dispose()
    try:
        items = run_check(client, database_url, tmp_path, 3, legacy={"simulated": silent})
    finally:  # the session's PostgreSQL database is shared: leave it whole
        engine = create_engine(database_url)
        with engine.begin() as connection:
            (index,) = [i for i in events.indexes if i.name == "ix_events_thread_key"]
            index.create(connection)
        engine.dispose()
    assert failed(items) == {
        "indexes present",
        "legacy handler answering",
        "no two rows for one fact",
    }
    assert "events.ix_events_thread_key" in items["indexes present"].measured
    assert "did not answer" in items["legacy handler answering"].measured
    assert items["no two rows for one fact"].measured.startswith("1 message(s) stored twice")


def test_a_live_legacy_handler_is_a_tick_and_never_sees_a_probe(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    legacy = Legacy()
    try:
        client = make_client(env=NO_FLAGS, legacy={"simulated": legacy.url + "/hook"})
        items = run_check(
            client, database_url, tmp_path, 0, legacy={"simulated": legacy.url + "/hook"}
        )
        assert items["legacy handler answering"].status == OK
        assert legacy.received == []  # HEAD is not recorded; no probe was forwarded
        reply = client.post(
            "/webhooks/simulated", content=sim_body(sim_message("REAL-1")), headers=bearer()
        )
        assert reply.status_code == 202
        assert len(legacy.received) == 1
    finally:
        legacy.close()


def test_normalization_failures_and_slow_webhooks_are_crosses(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    client = make_client(env=NO_FLAGS)
    bad = orjson.dumps({"account": "sim-store-1", "events": [{"type": "bogus", "id": "x"}]})
    for _ in range(3):
        assert client.post("/webhooks/simulated", content=bad, headers=bearer()).status_code == 200
    big = sim_body(*(sim_message(f"BIG-{i}", text="Oi " * 20) for i in range(6000)))
    for _ in range(3):
        assert client.post("/webhooks/simulated", content=big, headers=bearer()).status_code == 200
    items = run_check(client, database_url, tmp_path, 1)
    assert {"normalization rate", "error rate", "p95 latency"} <= failed(items)
    assert "3 not understood" in items["error rate"].measured


def test_a_schema_behind_head_stops_the_check_with_a_cross(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    client = make_client(env=NO_FLAGS)
    from alembic import command

    engine = create_engine(database_url)
    config = alembic_config(database_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    engine.dispose()
    try:
        items = run_check(client, database_url, tmp_path, 0)
        assert failed(items) == {"migrations at head"}
        assert items["migrations at head"].measured == "revision 0004"
        assert items["everything else"].status == "skip"
    finally:
        engine = create_engine(database_url)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        engine.dispose()


def test_the_command_exits_0_1_and_2(make_client: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    settings = make_settings(url, tmp_path)
    config = tmp_path / "wacanon.toml"
    config.write_text(
        f'database_url = "{url}"\nflag_refresh_seconds = 0.2\n'
        f'[providers.simulated]\ntoken = "{SIM_TOKEN}"\n'
    )
    assert wacanon(tmp_path, "db", "upgrade", "--config", str(config)).returncode == 0
    from tests.api.conftest import LiveServer
    from wacanon.api.app import create_app

    server = LiveServer(create_app(settings, env=NO_FLAGS))
    base = server.start()
    try:
        ok = wacanon(
            tmp_path,
            "rollout",
            "check",
            "--phase",
            "0",
            "--url",
            base,
            "--config",
            str(config),
            env=CLEAN_ENV,
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "✓ shadow mode: nothing written" in ok.stdout
        assert "0 ✗" in ok.stdout
        wrong = wacanon(
            tmp_path,
            "rollout",
            "check",
            "--phase",
            "2",
            "--url",
            base,
            "--json",
            "--config",
            str(config),
            env=CLEAN_ENV,
        )
        assert wrong.returncode == 1
        report = json.loads(wrong.stdout)
        assert report["ok"] is False
        assert "flags as Phase 2 sets them" in {
            i["name"] for i in report["items"] if i["status"] == "fail"
        }
        assert "✗ flags as Phase 2 sets them: at Phase 0" in wrong.stderr
    finally:
        server.stop()
    gone = wacanon(
        tmp_path,
        "rollout",
        "check",
        "--phase",
        "0",
        "--url",
        base,
        "--config",
        str(config),
        env=CLEAN_ENV,
    )
    assert gone.returncode == 2
    assert "could not check: server" in gone.stderr
    assert "unreachable" in gone.stderr


def test_a_server_of_two_workers_is_judged_on_both(postgres_server: str, tmp_path: Path) -> None:
    """`serve --workers 2`: /metrics/window is answered by whichever worker takes the
    connection, and the check judged that one alone — its verdict flipped from run to
    run. Now it asks until every worker answered, and adds their windows up."""
    from tests.api.test_metrics import serve_workers
    from tests.conftest import _clean
    from tests.ingest.test_durability import serve_config

    _clean(postgres_server)
    config = serve_config(tmp_path, postgres_server)
    process, base = serve_workers(config, tmp_path, CLEAN_ENV)
    try:
        nodes: set[str] = set()
        sent = 0
        while len(nodes) < 2 or sent < 30:  # a new connection each: both workers take some
            assert sent < 400, "one worker took every webhook"
            body = sim_body(sim_message(f"W-{sent}", sender=f"55119700{sent:05d}"))
            assert httpx.post(f"{base}/webhooks/simulated", content=body, headers=bearer())
            sent += 1
            nodes.add(httpx.get(f"{base}/metrics/window").json()["node"])
        check = ("rollout", "check", "--phase", "0", "--url", base, "--json")
        reports = [
            json.loads(wacanon(tmp_path, *check, "--config", str(config), env=CLEAN_ENV).stdout)
            for _ in range(3)
        ]
    finally:
        process.terminate()
        process.wait(20)
    for report in reports:
        (p95,) = [i["measured"] for i in report["items"] if i["name"] == "p95 latency"]
        webhooks = int(p95.split(" webhook(s)")[0].rsplit(", ", 1)[1])
        assert webhooks >= sent, p95  # every worker's, probes besides
        assert p95.endswith(", 2 worker processes"), p95

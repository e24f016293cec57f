"""``wacanon doctor`` (issue #9 §7) as an operator runs it, on both databases: a healthy
store has no finding; each of the seed's troubleshooting problems, provoked for real,
is found — and the fix it prints, run as printed, clears it; exit 0 / 1 / 2."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from tests.api.conftest import LiveServer, bearer, make_settings, sim_body, sim_message
from tests.ingest.test_routing_live import ROUTING_ON, fetch, wait_routed
from tests.test_cli_service import wacanon
from wacanon.api.app import create_app
from wacanon.store.database import create_engine, upgrade
from wacanon.store.tables import conversations, events

ROUTING_OFF = {"WHATSAPP_CANONICAL_SHADOW_MODE": "false", "WHATSAPP_ROUTING_ENABLED": "false"}


def doctor_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "wacanon.toml"
    path.write_text(
        f'database_url = "{url}"\nspool_path = "{tmp_path / "spool"}"\n'
        '[providers.simulated]\ntoken = "sim-token-for-tests"\n'
        '[[accounts]]\nprovider = "simulated"\naccount_id = "sim-store-1"\nshopper_id = "shop-1"\n'
    )
    return path


@contextmanager
def routing_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A live server with routing on, stopped when the block ends; its base URL."""
    server = LiveServer(create_app(make_settings(database_url, tmp_path), env=ROUTING_ON))
    try:
        yield server.start()
    finally:
        server.stop()


def doctor(tmp_path: Path, config: Path, *args: str, env: dict[str, str]) -> tuple[int, Any]:
    """Exit code and the --json report (the stderr line when it could not check)."""
    done = wacanon(tmp_path, "doctor", "--json", "--config", str(config), *args, env=env)
    if done.returncode == 2:
        return 2, done.stderr
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def traffic(
    url: str, tmp_path: Path, env: dict[str, str], messages: int, prefix: str = "DOC"
) -> None:
    """Real webhooks through a real server, which is stopped afterwards (nothing routes
    behind the doctor's back)."""
    server = LiveServer(create_app(make_settings(url, tmp_path), env=env))
    try:
        with httpx.Client(base_url=server.start(), timeout=30) as client:
            for i in range(messages):
                body = sim_body(sim_message(f"{prefix}-{i}", sender=f"5511944400{i:03d}"))
                answer = client.post("/webhooks/simulated", content=body, headers=bearer())
                assert answer.status_code == 200
        if env.get("WHATSAPP_ROUTING_ENABLED") == "true":
            wait_routed(url, expected_events=2 * messages)  # each message opens its conversation
        else:
            time.sleep(0.5)  # passed over by the router
    finally:
        server.stop()


def run_sql(url: str, statements: list[str]) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
    engine.dispose()


def test_each_problem_is_found_and_its_printed_fix_clears_it(
    database_url: str, tmp_path: Path
) -> None:
    config = doctor_config(tmp_path, database_url)
    traffic(database_url, tmp_path, ROUTING_ON, messages=4)
    rc, healthy = doctor(tmp_path, config, env=ROUTING_ON)
    assert rc == 0, healthy
    keys = healthy["idempotency keys derived as when stored"]["measured"]
    assert keys == "4 of the 4 events the latest 4 stored webhooks stored are derived again"

    engine = create_engine(database_url)
    e = events.c
    with engine.begin() as connection:
        messages = connection.execute(
            sa.select(events).where(e.event_type == "whatsapp.message.inbound").order_by(e.id)
        ).all()
        copy = {**messages[0]._mapping, "idempotency_key": "f" * 64}
        del copy["id"]
        connection.execute(events.insert().values(copy))  # one message, two rows
        connection.execute(  # stored under a key today's normalizers do not derive
            events.update().where(e.id == messages[1].id).values(idempotency_key="0" * 64)
        )
        connection.execute(  # routed, yet without its conversation
            events.update().where(e.id == messages[2].id).values(conversation_id=None)
        )
    engine.dispose()
    run_sql(database_url, ["DROP INDEX ix_events_skm_id_occurred_at"])
    traffic(database_url, tmp_path, ROUTING_OFF, messages=6, prefix="OFF")  # passed over
    spooled = tmp_path / "spool" / "spool-4242.jsonl"  # as a server left it in an outage
    spooled.write_text('{"provider": "simulated"}\n')

    rc, report = doctor(tmp_path, config, env=ROUTING_ON)  # ... and routing on now
    assert rc == 1
    found = {name for name, c in report.items() if c["status"] == "found"}
    assert found == {
        "indexes present",
        "one row per message",
        "idempotency keys derived as when stored",
        "spool empty",
        "no event passed over while routing is on",
        "every routed message has a conversation",
    }
    assert "sim-store-1 DOC-0" in report["one row per message"]["measured"]
    keys = report["idempotency keys derived as when stored"]["measured"]
    # the altered key, and the copy's: neither is what the normalizers derive
    assert "2 stored under a key today's normalizers do not derive" in keys
    assert report["no event passed over while routing is on"]["measured"].startswith("shop-1 6")
    assert report["spool empty"]["measured"].startswith("1 webhook(s)")
    index_fix = report["indexes present"]["fix"]
    assert "ix_events_skm_id_occurred_at" in index_fix
    assert report["indexes present"]["measured"] == "missing: events.ix_events_skm_id_occurred_at"

    # The fixes, as printed.
    run_sql(database_url, index_fix.split("; "))
    (rebuild,) = set(re.findall(r"wacanon conversations rebuild --shopper [^\s;]+", report[
        "no event passed over while routing is on"]["fix"] + "; " + report[
        "every routed message has a conversation"]["fix"]))  # fmt: skip
    rebuilt = wacanon(tmp_path, *shlex.split(rebuild)[1:], "--config", str(config), env=ROUTING_ON)
    assert rebuilt.returncode == 0, rebuilt.stderr
    spooled.unlink()  # a server drains it; here, nothing real was in it
    engine = create_engine(database_url)
    with engine.begin() as connection:  # the two rows the normalizers did not make
        connection.execute(events.delete().where(e.idempotency_key == "f" * 64))
        connection.execute(
            events.update()
            .where(e.id == messages[1].id)
            .values(idempotency_key=messages[1].idempotency_key)
        )
    engine.dispose()
    rc, after = doctor(tmp_path, config, env=ROUTING_ON)
    assert rc == 0, {n: c for n, c in after.items() if c["status"] == "found"}


def test_normalization_errors_name_their_paths_and_the_commands(
    database_url: str, tmp_path: Path
) -> None:
    config = doctor_config(tmp_path, database_url)
    server = LiveServer(create_app(make_settings(database_url, tmp_path), env=ROUTING_ON))
    base = server.start()
    try:
        for i in range(3):
            body = sim_body(sim_message(f"N-{i}"), {"type": "teleport", "id": f"T-{i}"})
            assert httpx.post(f"{base}/webhooks/simulated", content=body, headers=bearer())
        assert httpx.post(f"{base}/webhooks/simulated", content=b"{not json", headers=bearer())

        rc, report = doctor(tmp_path, config, "--url", base, env=ROUTING_ON)
        assert rc == 1
        letters = report["no dead letter in the last 24 h"]
        assert letters["status"] == "found"
        assert letters["measured"].startswith("3 waiting; top error paths: ")
        assert "simulated $.events[*].type: Invalid value … (3)" in letters["measured"]
        # not a normalizer's: told apart (nothing clears it), never a finding of its own
        assert letters["measured"].endswith(
            "; 1 body that is not JSON, a sender's bug (kept; wacanon_invalid_json_total)"
        )
        assert "wacanon compare --from-journal --since 20" in letters["fix"]
        assert "wacanon replay --dead-letter" in letters["fix"]
        rate = report["normalization rate (journal, last hour)"]
        assert (rate["status"], rate["measured"]) == (
            "found",
            "0.00% of 3 webhook(s) normalized whole",
        )
        # The running server: ready, its error rate (3 of 4 not understood), spool, pools.
        assert report["ready"]["status"] == "ok"
        assert report["error rate"]["status"] == "found"
        assert "3 not understood" in report["error rate"]["measured"]
        assert report["server's spool empty"]["status"] == "ok"
        pools = report["connection pools"]
        assert pools["status"] == "ok"
        assert re.fullmatch(r"\d+ of 15 connections checked out", pools["measured"]), pools
    finally:
        server.stop()
    unreachable = doctor(tmp_path, config, "--url", base, env=ROUTING_ON)
    assert unreachable[0] == 2
    assert "could not check: server" in unreachable[1]


def test_a_body_that_is_not_json_is_told_apart_not_a_finding(
    database_url: str, tmp_path: Path
) -> None:
    """One bad request failed the check for 24 h, with a fix that could not clear it."""
    config = doctor_config(tmp_path, database_url)
    with routing_server(database_url, tmp_path) as base:
        refused = httpx.post(f"{base}/webhooks/simulated", content=b"not json", headers=bearer())
        assert refused.status_code == 400
    _, report = doctor(tmp_path, config, env=ROUTING_ON)
    letters = report["no dead letter in the last 24 h"]
    assert (letters["status"], letters["measured"]) == (
        "ok",
        "none; 1 body that is not JSON, a sender's bug (kept; wacanon_invalid_json_total)",
    )


def test_redeliveries_are_not_the_webhooks_whose_keys_are_derived_again(
    database_url: str, tmp_path: Path
) -> None:
    """A redelivery stores nothing under its own correlation id: with the latest webhooks
    all redeliveries the check said "✓ 0 of the 0 events", having compared nothing."""
    config = doctor_config(tmp_path, database_url)
    with routing_server(database_url, tmp_path) as base:
        body = sim_body(sim_message("K-1"))
        for _ in range(3):  # the webhook, then two redeliveries of it
            assert httpx.post(f"{base}/webhooks/simulated", content=body, headers=bearer())
    _, report = doctor(tmp_path, config, env=ROUTING_ON)
    keys = report["idempotency keys derived as when stored"]
    assert (keys["status"], keys["measured"]) == (
        "ok",
        "1 of the 1 events the latest 1 stored webhooks stored are derived again",
    )


def test_it_could_not_check_says_why_and_exits_2(tmp_path: Path) -> None:
    missing = doctor_config(tmp_path, f"sqlite:///{tmp_path / 'nowhere.db'}")
    rc, why = doctor(tmp_path, missing, env={})
    assert rc == 2
    assert "no database at" in why
    assert not (tmp_path / "nowhere.db").exists()  # a doctor creates nothing
    down = doctor_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/test")
    rc, why = doctor(tmp_path, down, env={})
    assert rc == 2
    assert "could not check" in why


def test_a_schema_behind_head_is_the_one_finding(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    create_engine(url).connect().close()  # a database file with no schema yet
    rc, report = doctor(tmp_path, doctor_config(tmp_path, url), env={})
    assert rc == 1
    assert report["migrations at head"]["fix"] == "wacanon db upgrade"
    assert report["everything else"]["status"] == "skip"
    human = wacanon(tmp_path, "doctor", "--config", str(doctor_config(tmp_path, url)))
    assert human.returncode == 1
    assert "✗ migrations at head" in human.stdout
    assert "fix: wacanon db upgrade" in human.stdout


def test_a_unique_key_dropped_on_postgresql_is_found_with_its_collisions(
    postgres_server: str, tmp_path: Path
) -> None:
    from tests.conftest import _clean

    _clean(postgres_server)
    config = doctor_config(tmp_path, postgres_server)
    traffic(postgres_server, tmp_path, ROUTING_ON, messages=2)
    engine = create_engine(postgres_server)
    inspector = sa.inspect(engine)
    (unique,) = [
        c["name"]
        for c in inspector.get_unique_constraints("events")
        if c["column_names"] == ["idempotency_key"]
    ]
    with engine.begin() as connection:
        connection.execute(sa.text(f"ALTER TABLE events DROP CONSTRAINT {unique}"))
        row = connection.execute(sa.select(events).limit(1)).first()
        assert row is not None
        copy = dict(row._mapping)
        del copy["id"]
        connection.execute(events.insert().values(copy))
    engine.dispose()
    try:
        rc, report = doctor(tmp_path, config, env=ROUTING_ON)
        assert rc == 1
        assert report["unique idempotency_key"]["status"] == "found"
        collisions = report["one row per idempotency_key"]
        assert (collisions["status"], collisions["measured"]) == (
            "found",
            "1 key(s) stored more than once",
        )
        assert collisions["fix"].startswith("delete all but the first row of each key, then ")
        assert report["database connections"]["status"] == "ok"
        assert "wacanon's" in report["database connections"]["measured"]
    finally:
        _clean(postgres_server)
        run_sql(
            postgres_server,
            [f"ALTER TABLE events ADD CONSTRAINT {unique} UNIQUE (idempotency_key)"],
        )


def test_error_paths_of_every_kind_fold_their_values() -> None:
    from wacanon.doctor.store import error_paths

    cloud = (
        "messages at $.entry[0].changes[0].value.messages[1].timestamp: Expected `int`, "
        "got `object`; messages at $.entry[0].changes[0].value.messages[2]: Object missing "
        "required field `id`; statuses at $.entry[0].changes[1].value.statuses[0]: status "
        "expected one of ['delivered', 'read', 'sent']"
    )
    top = dict(
        error_paths(
            [
                ("cloud_api", "unrecognized", cloud),
                ("simulated", "unrecognized", "at $.events[0].type: Invalid value 'x'"),
                ("simulated", "unrecognized", "at $.events[3].type: Invalid value 'y'"),
            ]
        )
    )
    assert top["simulated $.events[*].type: Invalid value …"] == 2
    assert (
        top["cloud_api $.entry[*].changes[*].value.messages[*]: Object missing required field `id`"]
        == 1
    )
    assert top["cloud_api $.entry[*].changes[*].value.statuses[*]: status expected one of […]"] == 1
    assert len(top) == 4  # the three Cloud API errors apart


def test_what_routing_and_mixed_batches_must_not_trip_and_what_they_must(
    database_url: str, tmp_path: Path
) -> None:
    from tests.api.conftest import hub_signature

    config = doctor_config(tmp_path, database_url)
    batch = json.loads(Path("tests/fixtures/cloud_api/batch_two_entries.json").read_text())
    batch["entry"][1]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999000999"
    body = json.dumps(batch).encode()
    server = LiveServer(create_app(make_settings(database_url, tmp_path), env=ROUTING_ON))
    base = server.start()
    try:
        answer = httpx.post(f"{base}/webhooks/cloud_api", content=body, headers=hub_signature(body))
        assert answer.json().get("unknown_account") is True
        unrouted = sa.select(sa.func.count()).where(events.c.routed_seq.is_(None))
        deadline = time.monotonic() + 10
        while fetch(database_url, unrouted)[0][0]:  # routed before the server stops
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        server.stop()
    assert fetch(database_url, sa.select(sa.func.count()).select_from(conversations))[0][0]
    rc, report = doctor(tmp_path, config, env=ROUTING_ON)
    keys = report["idempotency keys derived as when stored"]
    assert keys["status"] == "ok", keys  # the unowned account's events were never stored
    run_sql(database_url, ["DELETE FROM conversations"])  # gone, the events still name them
    rc, report = doctor(tmp_path, config, env=ROUTING_ON)
    assert rc == 1
    gone = report["every event's conversation exists"]
    assert gone["status"] == "found"
    rebuilt = wacanon(tmp_path, *shlex.split(gone["fix"].split("; ")[0])[1:], "--config",
                      str(config), env=ROUTING_ON)  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    rc, report = doctor(tmp_path, config, env=ROUTING_ON)
    assert rc == 0, {n: c for n, c in report.items() if c["status"] == "found"}


def test_a_doctor_writes_nothing_and_reads_what_servers_answer_or_says_it_cannot(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = wacanon(empty, "doctor")  # first trial: no configuration at all
    assert done.returncode == 2
    assert list(empty.iterdir()) == []  # no token file, no database
    # A "server" whose /health is fine and whose every other answer is HTML.
    garbage = LiveServer(
        Starlette(
            routes=[
                Route("/health", lambda _: JSONResponse({"status": "ok"})),
                Route("/{path:path}", lambda _: HTMLResponse("<html>oops</html>")),
            ]
        )
    )
    base = garbage.start()
    try:
        url = f"sqlite:///{tmp_path / 'w.db'}"
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        rc, why = doctor(tmp_path, doctor_config(tmp_path, url), "--url", base, env={})
        assert rc == 2
        assert "answered what the doctor cannot read" in why
    finally:
        garbage.stop()
    newer = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = create_engine(newer)
    upgrade(engine)
    engine.dispose()
    run_sql(newer, ["UPDATE alembic_version SET version_num = '9999'"])
    rc, report = doctor(tmp_path, doctor_config(tmp_path, newer), env={})
    assert rc == 1
    assert report["migrations at head"]["fix"] == (
        "run the doctor of the wacanon version that migrated it"
    )


def test_with_the_database_away_the_spool_is_still_reported(tmp_path: Path) -> None:
    config = doctor_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/test")
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "spool-7.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    done = wacanon(tmp_path, "doctor", "--json", "--config", str(config))
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["could_not_check"].startswith("the database: ")
    (spool,) = [c for c in report["checks"] if c["id"] == "latency.spool empty"]
    assert (spool["status"], spool["measured"][:12]) == ("found", "2 webhook(s)")


def test_a_lock_held_elsewhere_is_said_not_waited_out(postgres_server: str, tmp_path: Path) -> None:
    """A LOCK TABLE (VACUUM FULL, a stuck migration): the doctor waited as long as it
    lasted, then said nothing was wrong (``rollout check`` shares the bounded wait)."""
    from tests.conftest import _clean
    from tests.ingest.test_lock_waits import write_lock

    _clean(postgres_server)
    config = doctor_config(tmp_path, postgres_server)
    config.write_text("writer_lock_timeout_seconds = 1\n" + config.read_text())
    with write_lock(postgres_server):
        started = time.monotonic()
        rc, why = doctor(tmp_path, config, env={})
        seconds = time.monotonic() - started
    assert rc == 2
    assert "could not check: the database: canceling statement due to lock timeout" in why
    assert seconds < 4.5  # the configured wait (and the command's start), not the default 5 s

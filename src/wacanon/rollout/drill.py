"""``wacanon rollout drill``: the rollback story run for real, by itself, with figures.

A server (in this process, on a loopback port), a legacy handler that records what it
gets, and a simulated stream of three parts:

1. the flags at Phase 3, 100 %, and the first part ingested;
2. ``rollback``, then the second part, which is journaled and forwarded only;
3. ``resume``, then the third part.

Then it verifies that every event was stored exactly once, that conversations and
assignments equal a rebuild over the same events (and the simulator's own count), and
that the legacy handler got every webhook once, in order. It runs on a scratch SQLite
file, or on the given empty PostgreSQL database, which it migrates first.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn

from wacanon.api.app import create_app
from wacanon.config import Settings
from wacanon.ingest.flag_cache import FlagCache
from wacanon.ingest.projector import Router
from wacanon.providers.registry import normalize
from wacanon.rollout.apply import apply_step
from wacanon.rollout.phases import Step
from wacanon.rollout.rollback import resume, roll_back
from wacanon.simulate import SimulationOptions, account_shoppers, expected_conversations, generate
from wacanon.store.database import create_engine, upgrade
from wacanon.store.tables import conversations, events, webhook_journal

OPTIONS = SimulationOptions(count=240, seed=11, shoppers=2, customers_per_shopper=12)
PARTS = (100, 80, 60)
REFRESH_SECONDS = 0.2
ROUTED_WITHIN_SECONDS = 60.0


class DrillRefused(Exception):
    """The drill cannot run here (a database that is not empty)."""


@dataclass
class DrillReport:
    webhooks: int = 0
    events: int = 0
    duplicates: int = 0
    replayed: int = 0
    conversations: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def figures(self) -> dict[str, Any]:
        return {
            "webhooks": self.webhooks,
            "events": self.events,
            "duplicates": self.duplicates,
            "replayed_webhooks": self.replayed,
            "conversations": self.conversations,
            "seconds": round(self.seconds, 2),
            "ok": not self.failures,
            "failures": self.failures,
        }


class LegacyReceiver:
    """The team's existing handler: records each POST's path and body, answers 202."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                owner.received.append(self.rfile.read(length))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/legacy"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """``wacanon serve``'s app on a free loopback port in a thread; its base URL."""
    config = uvicorn.Config(
        create_app(settings, env={}), host="127.0.0.1", port=0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the drill's server did not start")
        time.sleep(0.02)
    (sock,) = [s for srv in server.servers for s in srv.sockets][:1]
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def drill_settings(database_url: str, spool: Path, legacy_url: str, token: str) -> Settings:
    shoppers = sorted(set(account_shoppers(OPTIONS).values()))
    return Settings.model_validate(
        {
            "database_url": database_url,
            "spool_path": str(spool),
            "flag_refresh_seconds": REFRESH_SECONDS,
            "legacy": {"simulated": legacy_url},
            "providers": {"simulated": {"token": token}},
            "accounts": [
                {"provider": "simulated", "account_id": account, "shopper_id": shopper}
                for account, shopper in account_shoppers(OPTIONS).items()
            ],
            "shoppers": [{"id": s, "close_after_hours": 100_000} for s in shoppers],
            "skms": [
                {
                    "id": f"{s}-{name}",
                    "shopper_id": s,
                    "name": name.title(),
                    "wa_ids": [f"55119000{n}000{k}"],
                    "capacity": 4,
                }
                for n, s in enumerate(shoppers)
                for k, name in enumerate(("ana", "bia"), start=1)
            ],
        }
    )


def expected_keys(bodies: list[bytes]) -> set[str]:
    """The idempotency keys the stream's events must be stored under."""
    owners = account_shoppers(OPTIONS)
    return {
        event.idempotency_key
        for body in bodies
        for event in normalize("simulated", body, shopper_of=owners.get).events
    }


def stored_keys(engine: sa.Engine) -> list[str]:
    """The keys of the providers' events stored (not the lifecycle events derived)."""
    derived = events.c.provider_event.startswith("wacanon.")
    with engine.connect() as connection:
        return list(
            connection.execute(sa.select(events.c.idempotency_key).where(~derived)).scalars()
        )


def conversation_rows(engine: sa.Engine) -> list[tuple[Any, ...]]:
    c = conversations.c
    query = sa.select(c.id, c.shopper_id, c.thread_key, c.status, c.skm_id, c.assignments)
    with engine.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(query))


def run_drill(
    database_url: str | None = None, progress: Callable[[str], None] = lambda _: None
) -> DrillReport:
    """The whole story; the report's ``failures`` say what did not hold."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wacanon-drill-") as scratch:
        url = database_url or f"sqlite:///{Path(scratch) / 'drill.db'}"
        engine = create_engine(url)
        try:
            _prepare(engine)
            report = _story(engine, url, Path(scratch), progress)
        finally:
            engine.dispose()
    report.seconds = time.monotonic() - started
    return report


def _prepare(engine: sa.Engine) -> None:
    inspector = sa.inspect(engine)
    if "webhook_journal" in inspector.get_table_names():
        with engine.connect() as connection:
            rows = connection.execute(sa.select(sa.func.count()).select_from(webhook_journal))
            if rows.scalar_one():
                raise DrillRefused(
                    "the database holds webhooks: the drill needs an empty database "
                    "(it would mix its stream with yours)"
                )
    upgrade(engine)


def _story(
    engine: sa.Engine, url: str, scratch: Path, progress: Callable[[str], None]
) -> DrillReport:
    report = DrillReport()
    bodies = list(generate(OPTIONS))
    first, during, after = (
        bodies[: PARTS[0]],
        bodies[PARTS[0] : PARTS[0] + PARTS[1]],
        bodies[PARTS[0] + PARTS[1] :],
    )
    token = secrets.token_urlsafe(24)
    legacy = LegacyReceiver()
    settings = drill_settings(url, scratch / "spool", legacy.url, token)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        with serving(settings) as base, httpx.Client(base_url=base, timeout=30) as client:
            _apply(engine, Step(3, 100.0))
            time.sleep(2 * REFRESH_SECONDS)

            def post(part: list[bytes], what: str) -> None:
                progress(f"{what}: {len(part)} webhook(s)")
                for body in part:
                    answer = client.post("/webhooks/simulated", content=body, headers=headers)
                    if answer.status_code != 202:  # the legacy handler's own answer
                        report.failures.append(f"a webhook was answered {answer.status_code}")
                report.webhooks += len(part)

            post(first, "enabled (Phase 3 at 100 %)")
            _wait_routed(engine, report)
            before = stored_keys(engine)
            record, _ = roll_back(engine, None)
            progress("rolled back every shopper")
            time.sleep(2 * REFRESH_SECONDS)
            post(during, "during the rollback")
            if stored_keys(engine) != before:
                report.failures.append("events were stored during the rollback")
            done = resume(engine, settings, {}, record)
            report.replayed = done.totals.webhooks
            progress(
                f"resumed: {done.totals.new} new event(s) from {done.totals.webhooks} webhooks"
            )
            post(after, "after the resume")
            _wait_routed(engine, report)
        _verify(engine, settings, bodies, legacy, report)
    finally:
        legacy.close()
    return report


def _apply(engine: sa.Engine, step: Step) -> None:
    with engine.begin() as connection:
        apply_step(connection, step, env={})


def _wait_routed(engine: sa.Engine, report: DrillReport) -> None:
    query = sa.select(sa.func.count()).where(events.c.routed_seq.is_(None))
    deadline = time.monotonic() + ROUTED_WITHIN_SECONDS
    while True:
        with engine.connect() as connection:
            if not connection.execute(query).scalar_one():
                return
        if time.monotonic() > deadline:
            report.failures.append(f"routing did not catch up within {ROUTED_WITHIN_SECONDS:g} s")
            return
        time.sleep(0.1)


def _verify(
    engine: sa.Engine,
    settings: Settings,
    bodies: list[bytes],
    legacy: LegacyReceiver,
    report: DrillReport,
) -> None:
    keys = stored_keys(engine)
    expected = expected_keys(bodies)
    report.events = len(keys)
    report.duplicates = len(keys) - len(set(keys))
    if report.duplicates:
        report.failures.append(f"{report.duplicates} event(s) stored twice")
    if set(keys) != expected:
        lost, extra = len(expected - set(keys)), len(set(keys) - expected)
        report.failures.append(f"events: {lost} lost, {extra} unexpected")
    live = conversation_rows(engine)
    report.conversations = sum(1 for row in live if row[3] != "merged")
    per_shopper: dict[str, int] = {}
    for row in live:
        if row[3] != "merged":
            per_shopper[row[1]] = per_shopper.get(row[1], 0) + 1
    if per_shopper != expected_conversations(OPTIONS):
        report.failures.append(
            f"conversations per shopper {per_shopper}, expected {expected_conversations(OPTIONS)}"
        )
    flags = FlagCache.for_settings(engine, {}, settings)
    flags.refresh()
    Router(engine, settings, flags.for_shopper).rebuild()
    if conversation_rows(engine) != live:
        report.failures.append("conversations or assignments differ from a rebuild's")
    if legacy.received != bodies:
        report.failures.append(
            f"the legacy handler got {len(legacy.received)} webhook(s), not the "
            f"{len(bodies)} sent once each in order"
        )

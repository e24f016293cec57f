"""Rollback and resume: switch the canonical pipeline off without losing a webhook, and
bring back exactly what was there, replaying what was journaled meanwhile.

A rollback only writes overrides (:mod:`wacanon.store.rollout` remembers what they
replaced): every server obeys within ``flag_refresh_seconds`` and keeps verifying,
journaling (raw bodies included) and forwarding to the legacy handler, so the journal
holds everything. A resume restores the overrides, waits until every server has re-read
them, replays the journal from the rollback's moment through the pipeline (idempotency
keys make anything stored before the rollback took effect a duplicate, never a second
row) and routes the result in id order — the order a rebuild takes, so conversations
and assignments come out as a rebuild over the same events gives them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from wacanon.config import Settings
from wacanon.flags import CANONICAL_EVENTS_ENABLED, GLOBAL, ROUTING_ENABLED
from wacanon.ingest.flag_cache import FlagCache
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline
from wacanon.ingest.projector import Router
from wacanon.ingest.replay import ReplayTotals, replay
from wacanon.store import rollout as records
from wacanon.store.repository import journal_since
from wacanon.store.rollout import Rollback
from wacanon.store.tables import conversations

#: What a rollback switches off (the seed's "Procedimento de Rollback").
ROLLBACK_VALUES = {CANONICAL_EVENTS_ENABLED: "false", ROUTING_ENABLED: "false"}


def roll_back(engine: sa.Engine, shopper: str | None) -> tuple[Rollback, bool]:
    """Switch canonical events and routing off for one shopper or all; (record, new)."""
    with engine.begin() as connection:
        return records.start(connection, shopper or GLOBAL, ROLLBACK_VALUES)


@dataclass(frozen=True, slots=True)
class Resumed:
    rollback: Rollback
    totals: ReplayTotals
    routed: int
    conversations_before: int
    conversations_after: int
    seconds: float

    def counts(self) -> dict[str, int | float]:
        return {
            **self.totals.as_dict(),
            "routed_events": self.routed,
            "conversations_before": self.conversations_before,
            "conversations_after": self.conversations_after,
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True, slots=True)
class Progress:
    """Callbacks a command prints from: the wait, then replay and routing counts."""

    waiting: Callable[[float], None] = lambda _: None
    replayed: Callable[[ReplayTotals], None] = lambda _: None
    routed: Callable[[int], None] = lambda _: None


def active(engine: sa.Engine, shopper: str | None) -> Rollback | None:
    with engine.connect() as connection:
        return records.active(connection, shopper)


def resume(
    engine: sa.Engine,
    settings: Settings,
    env: Mapping[str, str],
    record: Rollback,
    progress: Progress | None = None,
) -> Resumed:
    """Restore what ``record`` replaced, wait for the servers, replay and route."""
    shown = progress or Progress()
    started = time.monotonic()
    with engine.begin() as connection:
        records.restore(connection, record)
    wait = 2 * settings.flag_refresh_seconds  # every server has re-read at least once
    shown.waiting(wait)
    time.sleep(wait)
    shopper = None if record.scope == GLOBAL else record.scope
    flags = FlagCache.for_settings(engine, env, settings)
    flags.refresh()
    before = _conversations(engine, shopper)
    pipeline = Pipeline(settings, flags.for_shopper, Metrics())
    with engine.connect() as connection:
        webhooks = journal_since(connection, record.started_at, shopper_id=shopper)
        totals = replay(engine, pipeline, webhooks, progress=shown.replayed)
    router = Router(engine, settings, flags.for_shopper)
    routed = router.route_queue(lambda _, done: shown.routed(done))
    done = Resumed(
        record, totals, routed, before, _conversations(engine, shopper), time.monotonic() - started
    )
    with engine.begin() as connection:
        records.finish(connection, record.id, done.counts())
    return done


def _conversations(engine: sa.Engine, shopper: str | None) -> int:
    query = sa.select(sa.func.count()).select_from(conversations)
    if shopper is not None:
        query = query.where(conversations.c.shopper_id == shopper)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())

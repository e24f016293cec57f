"""The routing worker: turns stored events into conversations, in the background.

Ingestion stays as it was — a webhook is acknowledged once its events are durable — and
each stored event whose shopper has ``WHATSAPP_ROUTING_ENABLED`` is queued for routing
(``events.routed_seq`` NULL). This thread takes the oldest queued events in batches,
applies them with :class:`~wacanon.routing.project.Projection` and commits the result
with the events' ``routing.conversation_id`` / ``thread_key``; lifecycle events are
stored in the same transaction and signalled after it. Every process runs one; their
batches are serialized by the database (``wacanon.store.routing``), so two processes
never route the same event or create the same conversation twice.

It is woken after each ingest commit, and polls every ``POLL_SECONDS`` besides (another
process's commits, routing turned on at runtime). Once a minute it closes the
conversations idle for their shopper's ``close_after_hours``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
import structlog

from wacanon.canonical.schema import CanonicalEvent
from wacanon.config import Settings
from wacanon.flags import ShopperFlags
from wacanon.ingest import signals
from wacanon.ingest.pipeline import event_row
from wacanon.routing.facts import StoredEvent, read_event
from wacanon.routing.lifecycle import lifecycle_event
from wacanon.routing.project import Projection
from wacanon.routing.state import Lifecycle
from wacanon.store import routing as store
from wacanon.store.repository import write_events

log = structlog.get_logger("wacanon.routing")

BATCH = 500
POLL_SECONDS = 0.5
IDLE_CHECK_SECONDS = 60.0
FLAG_CHECK_SECONDS = 1.0
RETRY_SECONDS = 1.0

_SIGNALS = {
    "whatsapp.conversation.opened": signals.conversation_opened,
    "whatsapp.conversation.closed": signals.conversation_closed,
    "whatsapp.conversation.merged": signals.conversation_merged,
}


class Router:
    """Routing's database work, one transaction per call (also what the CLI uses)."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        flags_for: Callable[[str | None], ShopperFlags],
        on_signal_failure: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.flags_for = flags_for
        self.on_signal_failure = on_signal_failure

    def route_pending(self, limit: int = BATCH) -> int:
        """Route the oldest queued events; how many were taken from the queue."""
        with self.engine.begin() as connection:
            seq = store.lock(connection)
            rows = store.unrouted(connection, limit)
            if not rows:
                return 0
            batch: list[tuple[int, StoredEvent]] = []
            passed: list[int] = []
            for row_id, payload in rows:
                try:
                    event = read_event(payload)
                except msgspec.DecodeError as exc:  # never expected: we wrote it
                    log.error("stored event unreadable; not routed", row=row_id, error=str(exc))
                    passed.append(row_id)
                    continue
                shopper = event.routing.shopper_id
                if shopper is None or not self.flags_for(shopper).routing:
                    passed.append(row_id)
                else:
                    batch.append((row_id, event))
            store.pass_over(connection, passed)
            state = store.load(connection, batch)
            projection = Projection(state, self.settings.close_after)
            for row_id, event in batch:
                projection.apply(row_id, event)
            routed = [(row_id, seq + i + 1) for i, (row_id, _) in enumerate(batch)]
            seq += len(batch)
            emitted, seq = self._lifecycle_rows(state.emitted, seq)
            store.save(connection, state, routed, [])
            stored = self._store_lifecycle(connection, emitted)
            store.set_seq(connection, seq)
        self._signal(stored)
        return len(rows)

    def close_idle(self, now: datetime | None = None) -> int:
        """Close the conversations silent for their shopper's window; how many."""
        now = now or datetime.now(UTC)
        shortest = min(
            [self.settings.close_after(s) for s in self.settings.known_shoppers]
            or [self.settings.close_after("")]
        )
        with self.engine.begin() as connection:
            seq = store.lock(connection)
            state = store.open_conversations_idle_since(connection, now - shortest)
            projection = Projection(state, self.settings.close_after)
            projection.close_idle(list(state.by_id.values()), now)
            emitted, seq = self._lifecycle_rows(state.emitted, seq)
            store.save(connection, state, [], [])
            stored = self._store_lifecycle(connection, emitted)
            store.set_seq(connection, seq)
        self._signal(stored)
        return len(stored)

    def close_conversation(self, conversation_id: str, now: datetime | None = None) -> bool:
        """Close an open conversation by command; False when it is not open. Raises
        ``LookupError`` for an unknown id."""
        now = now or datetime.now(UTC)
        with self.engine.begin() as connection:
            seq = store.lock(connection)
            state = store.conversation_state(connection, conversation_id)
            found = state.by_id.get(conversation_id)
            if found is None:
                raise LookupError(conversation_id)
            projection = Projection(state, self.settings.close_after)
            if not projection.close(state.current(found), now, "command"):
                return False
            emitted, seq = self._lifecycle_rows(state.emitted, seq)
            store.save(connection, state, [], [])
            stored = self._store_lifecycle(connection, emitted)
            store.set_seq(connection, seq)
        self._signal(stored)
        return True

    def rebuild(
        self, shopper_id: str | None = None, progress: Callable[[str, int], None] | None = None
    ) -> dict[str, int]:
        """Recompute conversations from the stored events (one shopper, or all), by the
        path live routing takes; events routed per shopper."""
        with self.engine.begin() as connection:
            store.lock(connection)
            shoppers = [shopper_id] if shopper_id else store.routed_shoppers(connection)
            queued = {s: store.reset_shopper(connection, s) for s in shoppers}
        done = 0
        while True:
            taken = self.route_pending()
            done += taken
            if progress is not None and taken:
                progress("routed", done)
            if taken < BATCH:
                break
        self.close_idle()
        return queued

    def check_flags(self) -> int:
        """Queue the passed-over events of shoppers for whom routing was turned on."""
        requeued = 0
        with self.engine.begin() as connection:
            store.lock(connection)
            for shopper in self.settings.known_shoppers:
                on = self.flags_for(shopper).routing
                name = f"routing_on:{shopper}"
                was = store.marker(connection, name)
                if on and was != 1:
                    count = store.requeue_passed_over(connection, shopper)
                    requeued += count
                    if count:
                        log.info("routing turned on; routing past events", shopper=shopper,
                                 events=count)  # fmt: skip
                if was != int(on):
                    store.set_marker(connection, name, int(on))
        return requeued

    def _lifecycle_rows(
        self, emitted: Sequence[Lifecycle], seq: int
    ) -> tuple[list[tuple[CanonicalEvent, dict[str, Any]]], int]:
        now = datetime.now(UTC)
        out = []
        for item in emitted:
            seq += 1
            event = lifecycle_event(item, now, f"routing-{item.conversation.id}")
            out.append((event, event_row(event, seq)))
        return out, seq

    @staticmethod
    def _store_lifecycle(
        connection: sa.Connection, emitted: list[tuple[CanonicalEvent, dict[str, Any]]]
    ) -> list[CanonicalEvent]:
        if not emitted:
            return []
        new = write_events(connection, [row for _, row in emitted])
        return [event for event, _ in emitted if event.idempotency_key in new]

    def _signal(self, stored: list[CanonicalEvent]) -> None:
        for event in stored:
            signal = _SIGNALS.get(event.event_type)
            if signal is not None:
                signals.send(signal, event.source.provider, self.on_signal_failure, event=event)


class RoutingWorker:
    """The thread around :class:`Router` (see the module docstring)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wacanon-routing", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        """Events were stored: route them soon."""
        self._wake.set()

    def _run(self) -> None:
        next_idle = time.monotonic() + IDLE_CHECK_SECONDS
        next_flags = 0.0
        while not self._stop.is_set():
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            try:
                now = time.monotonic()
                if now >= next_flags:
                    self.router.check_flags()
                    next_flags = now + FLAG_CHECK_SECONDS
                while not self._stop.is_set() and self.router.route_pending() == BATCH:
                    pass
                if now >= next_idle:
                    self.router.close_idle()
                    next_idle = now + IDLE_CHECK_SECONDS
            except Exception as exc:  # noqa: BLE001 - keep routing; events stay queued
                log.error("routing failed; retrying", error=f"{type(exc).__name__}: {exc}")
                self._stop.wait(RETRY_SECONDS)

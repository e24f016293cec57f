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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
import structlog

from wacanon.canonical.schema import CanonicalEvent
from wacanon.config import Settings, SkmConfig
from wacanon.flags import ShopperFlags
from wacanon.ingest import signals
from wacanon.ingest.pipeline import event_row
from wacanon.probe import PROBE
from wacanon.routing.facts import StoredEvent, read_event
from wacanon.routing.lifecycle import COMMAND_ASSIGN, lifecycle_event
from wacanon.routing.project import Projection
from wacanon.routing.state import RoutingState
from wacanon.store import assignment as directory_store
from wacanon.store import routing as store
from wacanon.store.repository import write_events

log = structlog.get_logger("wacanon.routing")

BATCH = 500
#: Optimistic batches (read and projected outside the lock) before one under it.
OPTIMISTIC_TRIES = 3
#: Rounds a rebuild gives to events passed over meanwhile by a server whose flags lag.
REBUILD_REQUEUES = 3
POLL_SECONDS = 0.5
#: After a wake-up, let this long's commits pile up: one routing transaction then covers
#: a burst of webhooks instead of each commit paying for its own (well inside the lag
#: budget of issue #7: every event has its conversation within 1 s).
GATHER_SECONDS = 0.2
IDLE_CHECK_SECONDS = 60.0
#: How often conversations left unanswered are looked for (``reassign_unanswered_minutes``).
UNANSWERED_CHECK_SECONDS = 15.0
FLAG_CHECK_SECONDS = 1.0
RETRY_SECONDS = 1.0

_SIGNALS = {
    "whatsapp.conversation.opened": signals.conversation_opened,
    "whatsapp.conversation.closed": signals.conversation_closed,
    "whatsapp.conversation.merged": signals.conversation_merged,
    "whatsapp.thread.assigned": signals.thread_assigned,
}


@dataclass(slots=True)
class _Plan:
    """One projected batch, ready to be written."""

    taken: int
    batch: list[tuple[int, StoredEvent]]
    passed: list[int]
    state: RoutingState
    routed: list[tuple[int, int]]
    lifecycle: list[tuple[CanonicalEvent, dict[str, Any]]]
    last_seq: int


class Router:
    """Routing's database work, one transaction per call (also what the CLI uses)."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        flags_for: Callable[[str | None], ShopperFlags],
        on_signal_failure: Callable[[str], None] = lambda _: None,
        on_routed: Callable[[Sequence[StoredEvent]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.flags_for = flags_for
        self.on_signal_failure = on_signal_failure
        self.on_routed = on_routed

    def route_pending(self, limit: int = BATCH) -> int:
        """Route the oldest queued events; how many were taken from the queue.

        Optimistic: the batch is read and projected without the lock, then written under
        it if no other batch committed meanwhile (the sequence number is unchanged) — so
        the lock, which on SQLite is the database's write lock that ingestion needs too, is
        held only while writing. After a few lost races the batch is planned under the lock.
        """
        with self.engine.connect() as probe:
            if not store.has_unrouted(probe):
                return 0
        for _ in range(OPTIMISTIC_TRIES):
            with self.engine.connect() as reading:
                seen = store.current_seq(reading)
                plan = self._plan(reading, limit, seen)
            if plan is None:
                return 0
            with self.engine.begin() as connection:
                if store.lock(connection) != seen:
                    continue  # another batch committed: what was read may be stale
                stored = self._write(connection, plan)
            return self._after(plan, stored)
        with self.engine.begin() as connection:
            plan = self._plan(connection, limit, store.lock(connection))
            if plan is None:
                return 0
            stored = self._write(connection, plan)
        return self._after(plan, stored)

    def _plan(self, connection: sa.Connection, limit: int, seq: int) -> _Plan | None:
        """Read the oldest queued events and project them (no write)."""
        rows = store.unrouted(connection, limit)
        if not rows:
            return None
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
        state = store.load(connection, batch)
        self._load_directory(connection, state, {e.routing.shopper_id or "" for _, e in batch})
        projection = Projection(state, self.settings.close_after)
        for row_id, event in batch:
            projection.apply(row_id, event)
        routed = [(row_id, seq + i + 1) for i, (row_id, _) in enumerate(batch)]
        # Passing over changes what a concurrent batch read too: count it as a step.
        lifecycle, last = self._lifecycle_rows(state, seq + len(batch) + bool(passed))
        return _Plan(len(rows), batch, passed, state, routed, lifecycle, last)

    def rules(self, shoppers: Sequence[str]) -> directory_store.Rules:
        """What the configuration and each shopper's flags say about assignment."""
        flags = {s: self.flags_for(s) for s in shoppers}
        return directory_store.Rules(
            account_skms=self.settings.account_skms,
            default_skms={
                s: d for s in shoppers if (d := self.settings.default_skm(s)) is not None
            },
            policies={s: f.assignment_policy for s, f in flags.items()},
            group_routing=frozenset(s for s, f in flags.items() if f.group_routing),
        )

    def _load_directory(
        self, connection: sa.Connection, state: RoutingState, shoppers: set[str]
    ) -> None:
        """The SKMs of these shoppers and the head of their queues (none: no assignment)."""
        assigning = directory_store.shoppers_with_skms(connection, sorted(shoppers - {""}))
        if not assigning:
            return
        directory_store.load_waiting(connection, state, assigning)
        directory_store.load_directory(connection, state, assigning, self.rules(assigning))

    def sync_directory(self) -> int:
        """Seed the SKM table from ``[[skms]]`` (see ``store.assignment.sync_config``),
        under the routing lock, then reconcile what it changed (:meth:`_reconcile`)."""
        changes, _ = self._change(lambda c: directory_store.sync_config(c, self.settings.skms))
        if changes:
            log.info("SKM directory seeded from the configuration", skms=len(changes))
        return len(changes)

    def add_skm(self, entry: SkmConfig) -> list[CanonicalEvent]:
        """A new SKM at runtime; the assignments their room made (the queue's head).
        Raises ``store.assignment.DirectoryError``, also for a shopper neither the
        configuration nor any stored event names (a typo would stay for good)."""
        known = {*self.settings.known_shoppers, PROBE}  # PROBE: `wacanon rollout check`'s
        if entry.shopper_id not in known:
            with self.engine.connect() as connection:
                if store.has_events_of(connection, entry.shopper_id):
                    known.add(entry.shopper_id)
        if entry.shopper_id not in known:
            raise directory_store.DirectoryError(
                422,
                f"shopper_id: no shopper {entry.shopper_id!r} "
                f"(known: {', '.join(sorted(known - {PROBE})) or 'none'})",
            )
        return self._change(lambda c: [directory_store.add_skm(c, entry)])[1]

    def update_skm(self, skm_id: str, changes: dict[str, Any]) -> list[CanonicalEvent]:
        """Change an SKM at runtime (``store.assignment.EDITABLE``); the assignments
        that followed: their open conversations reassigned when deactivated, the queue's
        head when anyone gained room. Raises ``store.assignment.DirectoryError``."""
        return self._change(lambda c: [directory_store.update_skm(c, skm_id, changes)])[1]

    def _change(
        self, write: Callable[[sa.Connection], list[directory_store.Change]]
    ) -> tuple[list[directory_store.Change], list[CanonicalEvent]]:
        """One directory write under the routing lock, reconciled in the same transaction
        (so no batch assigns from a directory that is half changed), then signalled:
        what changed, and the assignments that followed."""
        with self.engine.begin() as connection:
            seq = store.lock(connection)
            changes = write(connection)
            if not changes:
                return changes, []
            # An optimistic batch read before this must read again: the step counts.
            emitted, seq = self._reconcile(connection, seq + 1, changes)
            store.set_seq(connection, seq)
        self._signal(emitted)
        return changes, emitted

    def _reconcile(
        self, connection: sa.Connection, seq: int, changes: Sequence[directory_store.Change]
    ) -> tuple[list[CanonicalEvent], int]:
        """After a directory change: the open conversations of the SKMs it deactivated go
        to others by the policy, and whoever has room now takes the queue's head — at
        once, not by a periodic job."""
        now = datetime.now(UTC)
        lost = sorted({skm for change in changes for skm in change.deactivated})
        state = RoutingState()
        directory_store.open_of(connection, state, lost)
        shoppers = sorted({change.shopper_id for change in changes})
        self._load_directory(connection, state, set(shoppers))
        projection = Projection(state, self.settings.close_after)
        for shopper in shoppers:
            losing = [
                c
                for c in state.by_id.values()
                if c.shopper_id == shopper and c.status == "open" and c.skm_id in lost
            ]
            projection.directory_changed(shopper, losing, now)
        return self._save_state(connection, state, seq)

    def _save_state(
        self, connection: sa.Connection, state: RoutingState, seq: int
    ) -> tuple[list[CanonicalEvent], int]:
        """Write what a projection outside a batch of events changed (a close, a command,
        a directory change, the clock) with the lifecycle events it emitted; the stored
        ones (to signal after commit) and the sequence number reached."""
        emitted, seq = self._lifecycle_rows(state, seq)
        store.save(connection, state, [], [])
        directory_store.save_directory(connection, state.directory)
        return self._store_lifecycle(connection, emitted), seq

    def reassign_unanswered(self, now: datetime | None = None) -> int:
        """Give to another SKM the conversations whose customer has waited longer than
        their shopper's ``reassign_unanswered_minutes`` for the assigned SKM's first reply
        (counted from the assignment); how many moved. Nothing while events wait for
        routing (an answer may be among them)."""
        now = now or datetime.now(UTC)
        limits = {
            s: m
            for s in self.settings.known_shoppers
            if (m := self.settings.reassign_unanswered(s)) and self.flags_for(s).routing
        }
        if not limits:
            return 0
        with self.engine.begin() as connection:
            seq = store.lock(connection)
            if store.has_unrouted(connection):
                return 0
            state = RoutingState()
            for shopper, minutes in limits.items():
                directory_store.unanswered(
                    connection, state, shopper, now - timedelta(minutes=minutes)
                )
            late = sorted(state.by_id.values(), key=lambda c: (c.assigned_at or now, c.id))
            if not late:
                return 0
            self._load_directory(connection, state, {c.shopper_id for c in late})
            projection = Projection(state, self.settings.close_after)
            moved = sum(projection.assigner.unanswered(c, now, limits[c.shopper_id]) for c in late)
            stored, seq = self._save_state(connection, state, seq + 1)
            store.set_seq(connection, seq)
        self._signal(stored)
        return moved

    def assign_conversation(
        self, conversation_id: str, skm_id: str, now: datetime | None = None
    ) -> list[CanonicalEvent]:
        """Assign by command (may exceed capacity; the reason says so). The stored
        ``thread.assigned`` events — the manual one first, then those that followed (the
        room it freed went to the queue) — none when it is that SKM's already. Raises
        ``LookupError`` (no such conversation), ``store.assignment.DirectoryError`` (no
        such SKM for its shopper, inactive, merged conversation).

        What waits for routing is routed first, as for a close by command: the command
        applies to the conversation as its events make it."""
        now = now or datetime.now(UTC)
        self.route_queue()
        with self.engine.begin() as connection:
            seq = store.lock(connection)
            state = store.conversation_state(connection, conversation_id)
            found = state.by_id.get(conversation_id)
            if found is None:
                raise LookupError(conversation_id)
            if found.status == "merged":
                raise directory_store.DirectoryError(
                    409, f"{conversation_id} was merged into {state.current(found).id}"
                )
            self._load_directory(connection, state, {found.shopper_id})
            projection = Projection(state, self.settings.close_after)
            try:
                record = projection.assign(found, skm_id, now)
            except LookupError:
                raise directory_store.DirectoryError(
                    404, f"no SKM {skm_id!r} for shopper {found.shopper_id}"
                ) from None
            except ValueError as exc:
                raise directory_store.DirectoryError(409, str(exc)) from None
            if record is None:
                return []
            stored, seq = self._save_state(connection, state, seq)
            store.set_seq(connection, seq)
        self._signal(stored)
        stored.sort(key=lambda e: e.source.provider_event != COMMAND_ASSIGN)  # manual first
        return stored

    def _write(self, connection: sa.Connection, plan: _Plan) -> list[CanonicalEvent]:
        store.pass_over(connection, plan.passed)
        store.save(connection, plan.state, plan.routed, [])
        directory_store.save_directory(connection, plan.state.directory)
        stored = self._store_lifecycle(connection, plan.lifecycle)
        store.set_seq(connection, plan.last_seq)
        return stored

    def _after(self, plan: _Plan, stored: list[CanonicalEvent]) -> int:
        if self.on_routed is not None:
            self.on_routed([event for _, event in plan.batch])
        self._signal(stored)
        return plan.taken

    def close_idle(self, now: datetime | None = None) -> int:
        """Close the conversations silent for their shopper's window; how many. Nothing
        while events wait for routing."""
        now = now or datetime.now(UTC)
        shortest = min(
            [self.settings.close_after(s) for s in self.settings.known_shoppers]
            or [self.settings.close_after("")]
        )
        with self.engine.connect() as probe:
            if not store.open_conversations_idle_since(probe, now - shortest).by_id:
                return 0
        with self.engine.begin() as connection:
            seq = store.lock(connection)
            if store.has_unrouted(connection):
                # Events wait (a rebuild, a backlog): closing now would decide on a
                # half-built state; the next check after they are routed closes instead.
                return 0
            state = store.open_conversations_idle_since(connection, now - shortest)
            idle = list(state.by_id.values())
            self._load_directory(connection, state, {c.shopper_id for c in idle})
            projection = Projection(state, self.settings.close_after)
            projection.close_idle(idle, now)
            stored, seq = self._save_state(connection, state, seq)
            store.set_seq(connection, seq)
        self._signal(stored)
        return len(stored)

    def close_conversation(self, conversation_id: str, now: datetime | None = None) -> bool:
        """Close an open conversation by command; False when it is not open. Raises
        ``LookupError`` for an unknown id.

        What waits for routing is routed first, so the close applies to the conversation
        as its events make it (during a rebuild, not to a half-built one whose earlier
        closes are still queued to be replayed)."""
        now = now or datetime.now(UTC)
        self.route_queue()
        with self.engine.begin() as connection:
            seq = store.lock(connection)
            state = store.conversation_state(connection, conversation_id)
            found = state.by_id.get(conversation_id)
            if found is None:
                raise LookupError(conversation_id)
            self._load_directory(connection, state, {found.shopper_id})
            projection = Projection(state, self.settings.close_after)
            if not projection.close(state.current(found), now, "command"):
                return False
            stored, seq = self._save_state(connection, state, seq)
            store.set_seq(connection, seq)
        self._signal(stored)
        return True

    def rebuild(
        self, shopper_id: str | None = None, progress: Callable[[str, int], None] | None = None
    ) -> dict[str, int]:
        """Recompute conversations from the stored events (one shopper, or all), by the
        path live routing takes; events queued per shopper.

        Shoppers routing is off for are left alone (their events would only be passed
        over, their conversations lost): :meth:`routing_off` names them first.
        """
        with self.engine.begin() as connection:
            store.lock(connection)
            shoppers = [shopper_id] if shopper_id else store.routed_shoppers(connection)
            off = set(self.routing_off(shoppers))
            queued = {s: store.reset_shopper(connection, s) for s in shoppers if s not in off}
        if not queued:
            return queued
        self.route_queue(progress)
        for _ in range(REBUILD_REQUEUES):
            # A server whose flags were behind may have passed some over meanwhile: they
            # belong to this rebuild, in their order, not to a later check's.
            if not self._requeue_passed_over(list(queued)):
                break
            self.route_queue(progress)
        self.close_idle()
        with self.engine.begin() as connection:
            store.lock(connection)
            if not store.has_unrouted(connection):  # else: confirmed by live routing later
                for shopper in queued:
                    store.drop_unconfirmed(connection, shopper)
        return queued

    def route_queue(self, progress: Callable[[str, int], None] | None = None) -> int:
        """Route until the queue is empty (as it was when a batch found it so)."""
        done = 0
        while True:
            taken = self.route_pending()
            done += taken
            if progress is not None and taken:
                progress("routed", done)
            if taken < BATCH:
                return done

    def _requeue_passed_over(self, shoppers: Sequence[str]) -> int:
        on = [s for s in shoppers if self.flags_for(s).routing]
        with self.engine.connect() as probe:
            waiting = [s for s in on if store.has_passed_over(probe, s)]
        if not waiting:
            return 0
        with self.engine.begin() as connection:
            store.lock(connection)
            return sum(store.requeue_passed_over(connection, s) for s in waiting)

    def routing_off(self, shoppers: Sequence[str]) -> list[str]:
        """Of these shoppers, those for whom routing is off as this process resolves it."""
        return [s for s in shoppers if not self.flags_for(s).routing]

    def check_flags(self) -> int:
        """Queue the passed-over events of the shoppers routing is on for.

        Not only when routing is turned on: a process whose flags were a moment behind
        another's may have passed events over (stored them with routing off, or passed
        them in a batch) after that — they are queued at the next check, so no event
        stays passed over while its shopper's routing is on. Cheap when there is
        nothing to do: a probe of the passed-over index per shopper, no write.
        """
        requeued = self._requeue_passed_over(self.settings.known_shoppers)
        if requeued:
            log.info("routing is on; routing passed-over events", events=requeued)
        return requeued

    def _lifecycle_rows(
        self, state: RoutingState, seq: int
    ) -> tuple[list[tuple[CanonicalEvent, dict[str, Any]]], int]:
        """Rows for the lifecycle events of one batch. Each names, in its columns, the
        conversation it belongs to now: an ``opened`` of a conversation merged later in
        the same batch goes with the survivor, as it would had the merge come later."""
        now = datetime.now(UTC)
        out = []
        for item in state.emitted:
            seq += 1
            event = lifecycle_event(item, now, f"routing-{item.conversation.id}")
            row = event_row(event, seq)
            current = state.current(item.conversation)
            row["conversation_id"], row["thread_key"] = current.id, current.thread_key
            out.append((event, row))
        return out, seq

    @staticmethod
    def _store_lifecycle(
        connection: sa.Connection, emitted: list[tuple[CanonicalEvent, dict[str, Any]]]
    ) -> list[CanonicalEvent]:
        if not emitted:
            return []
        new = write_events(connection, [row for _, row in emitted])
        store.confirm_lifecycle(
            connection, [row for _, row in emitted if row["idempotency_key"] not in new]
        )
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
        next_unanswered = time.monotonic() + UNANSWERED_CHECK_SECONDS
        next_flags = 0.0
        synced = False
        while not self._stop.is_set():
            if synced and self._wake.wait(POLL_SECONDS):  # the directory first, at once
                self._stop.wait(GATHER_SECONDS)
            self._wake.clear()
            try:
                if not synced:
                    self.router.sync_directory()
                    synced = True
                now = time.monotonic()
                if now >= next_flags:
                    self.router.check_flags()
                    next_flags = now + FLAG_CHECK_SECONDS
                while not self._stop.is_set() and self.router.route_pending() == BATCH:
                    pass
                if now >= next_idle:
                    self.router.close_idle()
                    next_idle = now + IDLE_CHECK_SECONDS
                if now >= next_unanswered:
                    self.router.reassign_unanswered()
                    next_unanswered = now + UNANSWERED_CHECK_SECONDS
            except Exception as exc:  # noqa: BLE001 - keep routing; events stay queued
                log.error("routing failed; retrying", error=f"{type(exc).__name__}: {exc}")
                self._stop.wait(RETRY_SECONDS)

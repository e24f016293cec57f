"""What happens to a verified webhook: normalize, gate by flags, decide what to write, signal.

The pipeline itself does no I/O: :meth:`Pipeline.plan` turns a received webhook into a
:class:`Plan` (the rows to write, the reply to give), the writer commits it, and
:meth:`Pipeline.committed` sends signals, logs and counts afterwards. The same code
serves live requests, the spool drain and ``wacanon replay``.

Per event, the shopper owning its account decides: an account nobody owns is
``unknown_account`` (journaled, counted, never lost); canonical events disabled → the
webhook is only journaled; shadow mode → events are logged and counted, never stored
and never signalled; otherwise they are stored, and duplicates are counted.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from wacanon.canonical.schema import CanonicalEvent
from wacanon.config import Settings
from wacanon.flags import ShopperFlags
from wacanon.ingest import signals
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.spool import SpoolRecord
from wacanon.providers.common import NormalizeError, NormalizeResult
from wacanon.providers.registry import normalize
from wacanon.store.repository import DeadLetter, JournalRow, WebhookWrite, WriteResult

log = structlog.get_logger("wacanon.ingest")

#: Outcomes that send no signal: the seed's Phase 0 promises "no signal is emitted".
SILENT_OUTCOMES = frozenset({"shadow", "disabled", "unknown_account"})


@dataclass(frozen=True, slots=True)
class Received:
    """A webhook that passed verification, as it arrived."""

    provider: str
    body: bytes
    correlation_id: str
    received_at: datetime
    signature_valid: bool
    path_event: str | None = None
    #: Secret values were masked out of ``body`` (see :mod:`wacanon.ingest.masking`).
    body_masked: bool = False

    def spool_record(self) -> SpoolRecord:
        return SpoolRecord(
            provider=self.provider,
            correlation_id=self.correlation_id,
            received_at=self.received_at,
            signature_valid=self.signature_valid,
            body_b64=base64.b64encode(self.body).decode("ascii"),
            path_event=self.path_event,
            body_masked=self.body_masked,
        )

    @classmethod
    def from_journal(cls, journal: JournalRow) -> Received:
        """The webhook as it arrived, from the journal row it was to be written with (the
        writer process spools from it: it is handed rows, not requests)."""
        return cls(
            journal.provider,
            journal.body,
            journal.correlation_id,
            journal.received_at,
            journal.signature_valid,
            journal.path_event,
            journal.body_masked,
        )

    @classmethod
    def from_record(cls, record: SpoolRecord) -> Received:
        return cls(
            record.provider,
            record.body,
            record.correlation_id,
            record.received_at,
            record.signature_valid,
            record.path_event,
            record.body_masked,
        )


@dataclass(slots=True)
class Plan:
    """One webhook's decisions: what to write, and what to tell the provider."""

    received: Received
    result: NormalizeResult
    write: WebhookWrite
    to_store: list[CanonicalEvent] = field(default_factory=list)
    shadow: list[CanonicalEvent] = field(default_factory=list)
    invalid_json: NormalizeError | None = None
    #: Events for accounts no shopper owns (not stored; a batch may mix them with others).
    unknown_account_events: int = 0

    @property
    def outcome(self) -> str:
        return self.write.journal.outcome

    def reply(self, result: WriteResult | None) -> dict[str, Any]:
        """The body answered to the provider.

        ``events`` counts new events (stored, or only logged in shadow mode),
        ``duplicates`` the events already stored. Flags say why the counts may surprise:
        ``spooled`` (the database was away; counted when drained), ``shadow`` (shadow mode
        stores nothing, so a redelivery is not a duplicate), ``unknown_account`` (some or
        all events belong to accounts no shopper owns), ``dead_letter`` (the database
        refused the data; the webhook is kept as a dead letter, its events not stored).
        """
        refused = result is not None and result.refused is not None
        new = len(result.new_keys) if result is not None else 0
        duplicates = len(self.to_store) - new if result is not None and not refused else 0
        body: dict[str, Any] = {
            "correlation_id": self.received.correlation_id,
            "events": new + len(self.shadow),
            "duplicates": duplicates,
            "ignored": self.result.ignored,
        }
        if result is None:
            body["spooled"] = True
        if self.shadow:
            body["shadow"] = True
        if self.unknown_account_events:
            body["unknown_account"] = True
        if refused:
            body["dead_letter"] = True
        return body


def event_row(event: CanonicalEvent, routed_seq: int | None = None) -> dict[str, Any]:
    """The events-table row of one event: the spec's columns plus the full canonical JSON.

    ``routed_seq`` None queues the event for routing; 0 passes it over (routing is off
    for its shopper: turning routing on routes it then)."""
    message, status = event.message, event.status
    return {
        "idempotency_key": event.idempotency_key,
        "event_id": event.event_id,
        "schema_version": event.schema_version,
        "event_type": event.event_type,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "provider": event.source.provider,
        "account_id": event.source.account_id,
        "provider_event": event.source.provider_event,
        "provider_message_id": event.source.provider_message_id,
        "shopper_id": event.routing.shopper_id,
        "skm_id": event.routing.skm_id,
        "conversation_id": event.routing.conversation_id,
        "thread_key": event.routing.thread_key,
        "actor_wa_id": event.actor.wa_id,
        "actor_role": event.actor.role,
        "chat_type": event.chat.type,
        "chat_id": event.chat.id,
        "message_type": message.type if message is not None else None,
        "status_value": status.value if status is not None else None,
        "correlation_id": event.trace.correlation_id,
        "payload": event.model_dump_json(),
        "routed_seq": routed_seq,
    }


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        flags_for: Callable[[str | None], ShopperFlags],
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._flags_for = flags_for
        self._metrics = metrics

    def plan(self, received: Received) -> Plan:
        provider = received.provider
        started = time.perf_counter()
        result = normalize(
            provider,
            received.body,
            received_at=received.received_at,
            correlation_id=received.correlation_id,
            signature_valid=received.signature_valid,
            shopper_of=lambda account: self._settings.shopper_for(provider, account),
        )
        m = self._metrics
        m.child(m.normalize_latency, provider).observe(time.perf_counter() - started)
        journal = JournalRow(
            correlation_id=received.correlation_id,
            received_at=received.received_at,
            provider=provider,
            body=received.body,
            body_sha256=hashlib.sha256(received.body).hexdigest(),
            signature_valid=received.signature_valid,
            outcome="ignored",
            path_event=received.path_event,
            ignored=result.ignored,
            errors=len(result.errors),
            body_masked=received.body_masked,
        )
        plan = Plan(received=received, result=result, write=WebhookWrite(journal=journal))
        invalid = next((e for e in result.errors if e.code == "invalid_json"), None)
        if invalid is not None:
            plan.invalid_json = invalid
            journal.outcome = "invalid_json"
            plan.write.dead_letter = DeadLetter(kind="invalid_json", error=invalid.message)
            return plan
        self._gate(plan)
        return plan

    def _gate(self, plan: Plan) -> None:
        """Sort each event by its shopper's flags, and name the webhook's outcome."""
        unknown = disabled = 0
        rows = plan.write.events = []
        for event in plan.result.events:
            shopper = event.routing.shopper_id
            if shopper is None:
                unknown += 1
                plan.unknown_account_events += 1
                continue
            flags = self._flags_for(shopper)
            if not flags.canonical:
                disabled += 1
            elif flags.shadow:
                plan.shadow.append(event)
            else:
                plan.to_store.append(event)
                rows.append(event_row(event, None if flags.routing else 0))
        journal = plan.write.journal
        journal.account_id, journal.shopper_id = _sole_owner(plan.result.events)
        if plan.to_store:
            journal.outcome = "stored"
        elif plan.shadow:
            journal.outcome = "shadow"
        elif disabled:
            journal.outcome = "disabled"
        elif unknown:
            journal.outcome = "unknown_account"
        elif plan.result.errors:
            journal.outcome = "error"
        if plan.result.errors and journal.outcome not in ("disabled", "unknown_account"):
            text = "; ".join(str(e) for e in plan.result.errors)
            plan.write.dead_letter = DeadLetter(kind="unrecognized", error=text)

    def replan(self, record: SpoolRecord) -> tuple[WebhookWrite, object]:
        """A spooled webhook planned again with today's flags (for the drain); it may have
        been partly written before it was spooled (:attr:`WebhookWrite.resumes`)."""
        plan = self.plan(Received.from_record(record))
        plan.write.resumes = True
        return plan.write, plan

    def committed(self, plan: Plan, result: WriteResult | None) -> int:
        """After the commit: signals, logs, metrics. ``None`` means spooled: only that is
        counted now; the rest is counted once, when the drain stores the webhook.

        Returns how many ``event_stored`` signals were sent (a probe reports it)."""
        provider = plan.received.provider
        m = self._metrics
        quiet = plan.outcome in SILENT_OUTCOMES  # shadow / disabled: no signal at all
        if result is None:  # counted again, in full, when the drain stores it
            m.webhooks.labels(provider, "spooled").inc()
            if not quiet:
                self._send(
                    signals.webhook_spooled, provider, correlation_id=plan.received.correlation_id
                )
            return 0
        outcome = "store_error" if result.refused is not None else plan.outcome
        m.child(m.webhooks, provider, outcome).inc()
        if plan.invalid_json is None:
            m.child(m.normalized, provider, "failed" if plan.result.errors else "ok").inc()
        if plan.result.ignored:
            m.ignored.labels(provider).inc(plan.result.ignored)
        if plan.unknown_account_events:  # also when a batch mixes owned and unowned accounts
            m.unknown_accounts.labels(provider).inc()
        if plan.invalid_json is not None:  # not JSON at all: its own series, not the
            m.invalid_bodies.labels(provider).inc()  # normalizers' error rate
        elif plan.result.errors:
            m.normalization_errors.labels(provider).inc(len(plan.result.errors))
        if plan.result.errors and not quiet:
            self._send(
                signals.normalization_failed,
                provider,
                errors=plan.result.errors,
                correlation_id=plan.received.correlation_id,
            )
        for event in plan.shadow:
            m.events.labels(provider, event.event_type, "shadow").inc()
            _log_shadow(event)
        if quiet:
            return 0
        if result.refused is not None:  # kept as a dead letter: no event was stored
            m.store_errors.labels(provider).inc()
            self._send(
                signals.webhook_journaled,
                provider,
                correlation_id=plan.received.correlation_id,
                outcome=outcome,
            )
            return 0
        sent = 0
        for event in plan.to_store:
            if event.idempotency_key in result.new_keys:
                m.child(m.events, provider, event.event_type, "stored").inc()
                self._send(signals.event_stored, provider, event=event)
                sent += 1
            else:
                m.child(m.duplicates, provider).inc()
                self._send(signals.duplicate_received, provider, event=event)
        self._send(
            signals.webhook_journaled,
            provider,
            correlation_id=plan.received.correlation_id,
            outcome=plan.outcome,
        )
        return sent

    def drained(self, stored: Sequence[tuple[object, WriteResult]]) -> None:
        """Signals and metrics for webhooks stored from the spool."""
        for plan, result in stored:
            if isinstance(plan, Plan):
                self.committed(plan, result)

    def _send(self, signal: Any, sender: str, **kwargs: Any) -> None:
        signals.send(signal, sender, self.count_signal_failure, **kwargs)

    def count_signal_failure(self, name: str) -> None:
        """A signal receiver raised (also routing's signals)."""
        self._metrics.signal_failures.labels(name).inc()


def _sole_owner(events: Sequence[CanonicalEvent]) -> tuple[str | None, str | None]:
    """The account and shopper a webhook belongs to — none when its events span several
    (a Cloud API batch can carry entries of many phone numbers)."""
    if not events:
        return None, None
    account: str | None = events[0].source.account_id
    shopper: str | None = events[0].routing.shopper_id
    for event in events:
        if event.source.account_id != account:
            account = None
        if event.routing.shopper_id != shopper:
            shopper = None
    return account, shopper


def _log_shadow(event: CanonicalEvent) -> None:
    """Shadow mode's record of each event: ids at INFO, the whole event only at DEBUG (LGPD)."""
    log.info(
        "shadow event",
        event_id=event.event_id,
        event_type=event.event_type,
        idempotency_key=event.idempotency_key,
        provider=event.source.provider,
        account_id=event.source.account_id,
        shopper_id=event.routing.shopper_id,
        message_type=event.message.type if event.message is not None else None,
    )
    log.debug("shadow event payload", payload=event.model_dump(mode="json"))

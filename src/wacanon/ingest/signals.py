"""Signals for embedding applications (agent scoring, analytics), sent after commit.

Subscribe with blinker as usual::

    from wacanon.ingest.signals import event_stored

    @event_stored.connect
    def on_event(sender, event, **extra): ...

``sender`` is the provider name. A receiver that raises is logged and counted and never
breaks ingestion or the other receivers: :func:`send` calls each receiver itself instead
of ``Signal.send``, which would stop at the first exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from blinker import NamedSignal, Namespace

signals = Namespace()

#: A canonical event was stored for the first time (``event=CanonicalEvent``).
event_stored = signals.signal("event_stored")
#: A redelivered event was recognized as already stored (``event=CanonicalEvent``).
duplicate_received = signals.signal("duplicate_received")
#: Part of a webhook could not be normalized (``errors=list[NormalizeError]``, ``correlation_id``).
normalization_failed = signals.signal("normalization_failed")
#: A webhook was journaled (``correlation_id``, ``outcome``).
webhook_journaled = signals.signal("webhook_journaled")
#: The database was unreachable and a webhook went to the spool (``correlation_id``).
webhook_spooled = signals.signal("webhook_spooled")

#: Routing opened, closed or merged a conversation (``event=CanonicalEvent``, the
#: ``whatsapp.conversation.*`` event stored for it); sent after its commit.
conversation_opened = signals.signal("conversation_opened")
conversation_closed = signals.signal("conversation_closed")
conversation_merged = signals.signal("conversation_merged")
#: ``whatsapp.thread.assigned``: a conversation went to an SKM (or to the queue).
thread_assigned = signals.signal("thread_assigned")

log = structlog.get_logger("wacanon.signals")


def send(
    signal: NamedSignal, sender: str, on_failure: Callable[[str], None], **kwargs: Any
) -> None:
    """Call every receiver; one that raises is logged and counted, the others still run."""
    if not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a subscriber's bug must not stop ingestion
            on_failure(signal.name)
            log.error(
                "signal receiver failed",
                signal=signal.name,
                receiver=getattr(receiver, "__qualname__", repr(receiver)),
                error=f"{type(exc).__name__}: {exc}",
            )

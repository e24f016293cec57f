"""The SKM score: points for what an SKM's messages and conversations did, from facts
the store reads (``wacanon.store.score``). Pure, so every weight and rule is tested
without a database; the table is in ``docs/assignment.md``.

- Each distinct status fact of an SKM's messages counts its weight once: a message
  sent, delivered and read adds 1 + 2 + 3 = 6; a redelivered status adds nothing.
- Business events recorded on their conversations (``POST /v1/events``) add the
  catalog's weight.
- ``multiple_failures``: three failed statuses of their messages in a row, with no
  delivered, read or played in between.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

STATUS_WEIGHTS = {"sent": 1, "delivered": 2, "read": 3, "failed": -5}
BUSINESS_WEIGHTS = {
    "commerce.intent.detected": 1,
    "commerce.cart.created": 2,
    "commerce.order.created": 5,
    "commerce.payment.pending": 0,
    "commerce.payment.confirmed": 10,
    "commerce.refund.requested": -2,
    "commerce.refund.completed": -5,
    "commerce.chargeback.opened": -10,
    "commerce.chargeback.won": 10,
    "commerce.chargeback.lost": -5,
    "delivery.created": 0,
    "delivery.dispatched": 1,
    "delivery.in_transit": 0,
    "delivery.delivered": 2,
    "delivery.failed": -3,
    "delivery.returned": -3,
}
#: Failed statuses in a row that raise ``multiple_failures``.
FAILURE_RUN = 3
_SUCCESS = frozenset({"delivered", "read", "played"})


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store found for one SKM in the window."""

    skm_id: str
    #: (message key, status value), in the order the statuses happened.
    statuses: Sequence[tuple[tuple[str, str, str], str]] = ()
    business: Sequence[str] = ()
    open: int = 0
    closed: int = 0
    waiting: int = 0
    #: Seconds from the customer's first message to the first answer, per conversation.
    first_responses: Sequence[float] = ()
    unanswered: int = 0


@dataclass(frozen=True, slots=True)
class Score:
    skm_id: str
    points: int
    open: int
    closed: int
    waiting: int
    first_response_p50_s: float | None
    first_response_p90_s: float | None
    unanswered: int
    risk_flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "skm_id": self.skm_id,
            "points": self.points,
            "open": self.open,
            "closed": self.closed,
            "waiting": self.waiting,
            "first_response_p50_s": self.first_response_p50_s,
            "first_response_p90_s": self.first_response_p90_s,
            "unanswered": self.unanswered,
            "risk_flags": list(self.risk_flags),
        }


def status_points(statuses: Iterable[tuple[tuple[str, str, str], str]]) -> int:
    """Each distinct (message, status) once."""
    return sum(STATUS_WEIGHTS.get(value, 0) for _, value in set(statuses))


def has_failure_run(statuses: Iterable[tuple[tuple[str, str, str], str]]) -> bool:
    """Three failed statuses in a row, no success between them (a ``sent`` is neither:
    it comes before every outcome)."""
    run = 0
    seen: set[tuple[tuple[str, str, str], str]] = set()
    for fact in statuses:
        if fact in seen:
            continue  # a redelivered status is the same fact
        seen.add(fact)
        value = fact[1]
        if value == "failed":
            run += 1
            if run >= FAILURE_RUN:
                return True
        elif value in _SUCCESS:
            run = 0
    return False


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (one of the values, never interpolated); None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def score(facts: Facts) -> Score:
    points = status_points(facts.statuses)
    points += sum(BUSINESS_WEIGHTS.get(t, 0) for t in facts.business)
    flags = ["multiple_failures"] if has_failure_run(facts.statuses) else []
    return Score(
        skm_id=facts.skm_id,
        points=points,
        open=facts.open,
        closed=facts.closed,
        waiting=facts.waiting,
        first_response_p50_s=percentile(facts.first_responses, 50),
        first_response_p90_s=percentile(facts.first_responses, 90),
        unanswered=facts.unanswered,
        risk_flags=flags,
    )

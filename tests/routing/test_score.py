"""The SKM score's arithmetic (``wacanon.routing.score``): weights counted once per
distinct status fact, the catalog's business weights, the failure run, percentiles."""

from __future__ import annotations

from wacanon.canonical.schema import BUSINESS_EVENT_TYPES
from wacanon.routing.score import (
    BUSINESS_WEIGHTS,
    Facts,
    has_failure_run,
    percentile,
    score,
    status_points,
)

M1 = ("evolution", "loja-1", "M1")
M2 = ("evolution", "loja-1", "M2")
M3 = ("evolution", "loja-1", "M3")


def test_a_message_sent_delivered_and_read_adds_six_once() -> None:
    facts = [(M1, "sent"), (M1, "delivered"), (M1, "read"), (M1, "read")]  # read redelivered
    assert status_points(facts) == 6


def test_failed_takes_five_and_queued_or_played_count_nothing() -> None:
    assert status_points([(M1, "failed"), (M2, "queued"), (M3, "played")]) == -5


def test_three_failures_in_a_row_are_a_risk_and_a_delivery_breaks_the_run() -> None:
    run = [(M1, "sent"), (M1, "failed"), (M2, "sent"), (M2, "failed"), (M3, "failed")]
    assert has_failure_run(run)
    broken = [(M1, "failed"), (M2, "failed"), (M3, "delivered"), (M3, "failed")]
    assert not has_failure_run(broken)
    assert not has_failure_run([(M1, "failed"), (M1, "failed"), (M1, "failed")])  # one fact


def test_percentiles_are_nearest_rank() -> None:
    values = [30.0, 10.0, 20.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile([12.0], 90) == 12.0
    assert percentile([], 50) is None


def test_every_business_type_has_a_weight_and_the_score_adds_them() -> None:
    assert set(BUSINESS_WEIGHTS) == BUSINESS_EVENT_TYPES
    s = score(
        Facts(
            "skm-ana",
            statuses=[(M1, "sent"), (M1, "delivered")],
            business=["commerce.order.created", "commerce.payment.confirmed"],
            open=2,
            first_responses=[60.0, 120.0],
        )
    )
    assert s.points == 3 + 5 + 10
    assert (s.first_response_p50_s, s.first_response_p90_s) == (60.0, 120.0)
    assert s.risk_flags == []
    assert s.as_dict()["open"] == 2

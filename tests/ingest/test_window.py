"""The in-process window behind ``/metrics/window`` (rollout check) and the console."""

from __future__ import annotations

from wacanon.ingest.window import BUCKET_SECONDS, KEEP_SECONDS, Window


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_probes_count_for_the_check_and_stay_out_of_the_console() -> None:
    clock = Clock()
    window = Window(clock)
    for _ in range(9):
        window.webhook(200, 0.004)
        window.normalized(failing=False, events=1, duplicates=0)
    window.webhook(503, 0.004)
    window.webhook(200, 0.9, probe=True)
    window.normalized(failing=True, events=0, duplicates=1, probe=True)

    checked = window.summary(60)
    assert (checked["webhooks"], checked["probes"], checked["server_errors"]) == (11, 1, 1)
    assert (checked["events"], checked["duplicates"], checked["normalization_failures"]) == (
        9,
        1,
        1,
    )
    assert checked["error_rate"] == 2 / 11
    assert checked["latency_ms"]["p99"] > 100  # the slow probe is in the check's view

    shown = window.summary(60, probes=False)
    assert (shown["webhooks"], shown["probes"], shown["duplicates"]) == (10, 0, 0)
    assert shown["normalization_rate"] == 1.0
    assert shown["error_rate"] == 1 / 10
    assert shown["latency_ms"]["p99"] <= 5  # ... and not in the console's


def test_old_buckets_leave_the_window_and_the_memory() -> None:
    clock = Clock()
    window = Window(clock)
    window.webhook(200, 0.001)
    clock.now += 5 * BUCKET_SECONDS
    window.webhook(200, 0.001)
    assert window.summary(BUCKET_SECONDS)["webhooks"] == 1
    assert window.summary(10 * BUCKET_SECONDS)["webhooks"] == 2
    clock.now += KEEP_SECONDS
    window.webhook(200, 0.001)
    assert window.summary(KEEP_SECONDS)["webhooks"] == 1
    assert len(window._buckets) == 1
    empty = Window(clock).summary(60)
    assert (empty["webhooks"], empty["error_rate"], empty["latency_ms"]["p50"]) == (0, None, None)


def test_published_counts_add_up_and_a_foreign_shape_counts_nothing() -> None:
    from wacanon.ingest.window import Counts, summarize

    clock = Clock()
    a, b = Window(clock), Window(clock)
    for _ in range(3):
        a.webhook(200, 0.002)
    b.webhook(503, 0.2)
    total = Counts()
    for window in (a, b):
        counts, _ = window.counts(300, probes=False)
        total.add(Counts.of(counts.as_dict()))  # as another node reads it back
    merged = summarize(total, 300)
    assert (merged["webhooks"], merged["server_errors"], merged["error_rate"]) == (4, 1, 0.25)
    assert merged["latency_ms"]["p99"] > 100
    assert Counts.of({"webhooks": 9, "latency": [1, 2]}).webhooks == 0

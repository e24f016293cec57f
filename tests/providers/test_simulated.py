"""The simulated provider: its one-pass fast path and its tolerant path agree."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.golden import cases
from wacanon.providers import simulated
from wacanon.providers.common import NormalizeContext

CTX = NormalizeContext(received_at=datetime(2026, 3, 1, tzinfo=UTC), correlation_id="c")


@pytest.mark.parametrize("case", cases("simulated"), ids=lambda p: p.stem)
def test_fast_and_tolerant_paths_give_the_same_result(case: Path) -> None:
    body = case.read_bytes()
    fast, tolerant = simulated.normalize(body, CTX), simulated._tolerant(body, CTX)
    assert [e.to_json() for e in fast.events] == [e.to_json() for e in tolerant.events]
    assert (fast.ignored, [str(e) for e in fast.errors]) == (
        tolerant.ignored,
        [str(e) for e in tolerant.errors],
    )


def test_people_are_phone_lid_or_bsuid() -> None:
    assert simulated.person("+55 11 98765-4321").wa_id == "5511987654321"
    assert simulated.person("lid:103899771998284").wa_id == "lid:103899771998284"
    assert simulated.person("bsuid:BR.1502576394655843").wa_id == "bsuid:BR.1502576394655843"

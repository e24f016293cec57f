"""Every golden fixture gives exactly its expected events (see ``tests/golden.py``)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.golden import cases, expected_path, run_case

PROVIDERS = ("cloud_api", "evolution", "baileys", "simulated")
ALL_CASES = [(p, c) for p in PROVIDERS for c in cases(p)]


@pytest.mark.parametrize(
    ("provider", "case"), ALL_CASES, ids=[f"{p}/{c.stem}" for p, c in ALL_CASES]
)
def test_fixture_gives_expected_events(provider: str, case: Path) -> None:
    expected_file = expected_path(case)
    assert expected_file.exists(), f"{expected_file.name} is missing: write and review it"
    expected = orjson.loads(expected_file.read_bytes())
    assert run_case(provider, case) == expected


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_has_at_least_fifteen_fixtures(provider: str) -> None:
    assert len(cases(provider)) >= 15

"""The docs that are generated from code match the code."""

from __future__ import annotations

from pathlib import Path

from wacanon.reference import render

ROOT = Path(__file__).parent.parent


def test_canonical_events_reference_is_current() -> None:
    committed = (ROOT / "docs" / "canonical-events.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m wacanon.reference > docs/canonical-events.md"

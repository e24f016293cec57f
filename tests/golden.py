"""Golden fixtures: ``tests/fixtures/<provider>/<case>.json`` beside ``<case>.expected.json``.

The expected file holds the whole normalize result — ``ignored``, ``errors`` (their
text) and every event as JSON — for a fixed ``received_at`` and ``correlation_id``, so
a failing comparison names the payload and the field. ``python -m tests.golden`` (re)writes
expected files for cases that have none; read every one you write before committing it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from wacanon import normalize

FIXTURES = Path(__file__).parent / "fixtures"
RECEIVED_AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CORRELATION_ID = "golden-correlation-id"


def cases(provider: str) -> list[Path]:
    """Every payload of a provider (not the expected files)."""
    return sorted(
        p for p in (FIXTURES / provider).glob("*.json") if not p.name.endswith(".expected.json")
    )


def expected_path(case: Path) -> Path:
    return case.with_name(case.name.removesuffix(".json") + ".expected.json")


def run_case(provider: str, case: Path) -> dict[str, Any]:
    """The normalize result of one fixture, as comparable JSON values."""
    result = normalize(
        provider, case.read_bytes(), received_at=RECEIVED_AT, correlation_id=CORRELATION_ID
    )
    return {
        "ignored": result.ignored,
        "errors": [str(e) for e in result.errors],
        "events": [e.model_dump(mode="json") for e in result.events],
    }


def write_missing(provider: str, *, overwrite: bool = False) -> list[Path]:
    written = []
    for case in cases(provider):
        target = expected_path(case)
        if target.exists() and not overwrite:
            continue
        data = run_case(provider, case)
        target.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        written.append(target)
    return written


if __name__ == "__main__":
    overwrite = "--overwrite" in sys.argv
    names = [a for a in sys.argv[1:] if not a.startswith("--")]
    for name in names or ["cloud_api", "evolution", "baileys", "simulated"]:
        for path in write_missing(name, overwrite=overwrite):
            print(f"wrote {path}")

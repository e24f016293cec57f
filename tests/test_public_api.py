"""The public surface stays small and sorted, and the library call is exactly as documented."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import pytest

import wacanon
from wacanon import NormalizeResult, UnknownProviderError, normalize


def test_all_is_short_and_sorted() -> None:
    def isort_style(name: str) -> tuple[int, str]:  # CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert wacanon.__all__ == sorted(wacanon.__all__, key=isort_style)
    assert len(wacanon.__all__) <= 10
    for name in wacanon.__all__:
        assert hasattr(wacanon, name)


def test_normalize_signature() -> None:
    params = inspect.signature(normalize).parameters
    assert list(params)[:2] == ["provider", "body"]
    for name in ("account", "received_at"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is None


def test_normalize_accepts_str_and_bytes() -> None:
    body = '{"account": "a", "events": [{"type": "contact", "wa_id": "5511987654321"}]}'
    when = datetime(2026, 3, 1, tzinfo=UTC)
    from_str = normalize("simulated", body, received_at=when)
    from_bytes = normalize("simulated", body.encode(), received_at=when)
    assert isinstance(from_str, NormalizeResult)
    assert [e.idempotency_key for e in from_str.events] == [
        e.idempotency_key for e in from_bytes.events
    ]
    assert from_str.ignored == 0
    assert from_str.errors == []


def test_account_overrides_the_payload() -> None:
    body = '{"account": "a", "events": [{"type": "contact", "wa_id": "5511987654321"}]}'
    (event,) = normalize("simulated", body, account="other").events
    assert event.source.account_id == "other"


def test_unknown_provider_raises_a_clear_error() -> None:
    with pytest.raises(UnknownProviderError, match="unknown provider 'telegram'"):
        normalize("telegram", b"{}")

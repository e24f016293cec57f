"""The API tokens of ``[[api_tokens]]``: which one a caller gave."""

from __future__ import annotations

import hmac
from collections.abc import Iterable


def matching_token(tokens: Iterable[tuple[str, str]], given: str) -> tuple[str, str] | None:
    """``(token, shopper_id)`` of the configured entry ``given`` is, compared in constant
    time; every entry is compared, so the time says nothing about which one matched."""
    found = None
    for token, shopper in tokens:
        if hmac.compare_digest(token.encode(), given.encode()):
            found = (token, shopper)
    return found

"""The API tokens of ``[[api_tokens]]``: which one a caller gave."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from wacanon.config import ApiTokenConfig


def matching_token(tokens: Iterable[ApiTokenConfig], given: str) -> ApiTokenConfig | None:
    """The configured entry ``given`` is, compared in constant time; every entry is
    compared, so the time says nothing about which one matched."""
    found = None
    for entry in tokens:
        if hmac.compare_digest(entry.token.encode(), given.encode()):
            found = entry
    return found

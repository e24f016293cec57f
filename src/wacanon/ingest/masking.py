"""Secret values are masked out of a webhook body before anything keeps it.

Evolution API puts its API key in every webhook body (``"apikey": "…"``). The key has
done its work once the webhook is verified; journal rows, dead letters and spool files
outlive that moment and are read by people and tools, so they keep the body with the
value replaced by ``"***"``. Nothing downstream needs it: replay does not verify again.

Masking never changes what a webhook says: only string values are replaced, never keys
or numbers — a body that is JSON stays the same JSON apart from the masked values.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from wacanon.providers.common import without_lone_surrogates

MASK = "***"
#: Minimum length of a configured secret masked wherever it appears: a short one could
#: equal ordinary words of a payload.
MIN_SECRET = 8
#: ``"apikey": "<value>"`` at any depth; the value as JSON writes it (escapes included).
_API_KEY_FIELD = re.compile(rb'("apikey"\s*:\s*)"(?:[^"\\]|\\.)*"')


class _ApiKey(msgspec.Struct, forbid_unknown_fields=False):
    apikey: str | None = None


_api_key = msgspec.json.Decoder(_ApiKey)


def body_api_key(body: bytes) -> str | None:
    """The top-level ``apikey`` of an Evolution body, if it has a text one."""
    try:
        return _api_key.decode(body).apikey
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def mask_secrets(provider: str, body: bytes, secret: str | None) -> tuple[bytes, bool]:
    """The body to keep, and whether anything was masked in it.

    Evolution's ``apikey`` values are masked (they may be instance tokens other than the
    configured key); the provider's configured ``secret`` is masked wherever it still
    appears: inside string values of a JSON body, anywhere in a body that is not JSON.
    """
    masked = False
    if provider == "evolution" and b'"apikey"' in body:
        body, count = _API_KEY_FIELD.subn(rb'\1"***"', body)
        masked = count > 0
    if not secret or len(secret) < MIN_SECRET:
        return body, masked
    raw = secret.encode()
    # Written with escapes (``\u002d``, ``\/``), the secret is not in the bytes but is in
    # the decoded strings, which is what events keep: a body with any escape is decoded.
    if raw not in body and b"\\" not in body:
        return body, masked
    try:
        document = msgspec.json.decode(without_lone_surrogates(body) or body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        if raw not in body:
            return body, masked
        return body.replace(raw, MASK.encode()), True  # not JSON: bytes only
    if raw not in body and msgspec.json.encode(secret)[1:-1] not in msgspec.json.encode(document):
        return body, masked  # escapes, but none spelling the secret
    return msgspec.json.encode(_without(document, secret)), True


def _without(value: Any, secret: str) -> Any:
    """``value`` with ``secret`` replaced inside every string value (keys untouched)."""
    if isinstance(value, str):
        return value.replace(secret, MASK)
    if isinstance(value, list):
        return [_without(v, secret) for v in value]
    if isinstance(value, dict):
        return {k: _without(v, secret) for k, v in value.items()}
    return value

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
    # the decoded strings, which is what events keep: such a body is decoded and searched.
    if raw not in body and not _escapes_may_spell(body, secret):
        return body, masked
    text = body[3:] if body.startswith(b"\xef\xbb\xbf") else body  # as decode_body reads it
    try:
        document = msgspec.json.decode(without_lone_surrogates(text) or text)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        if raw not in body:
            return body, masked
        return body.replace(raw, MASK.encode()), True  # not JSON: bytes only
    kept = _without(document, secret)
    if kept == document:  # escapes spelling something else, or the secret in a key only
        return body, masked
    return msgspec.json.encode(kept), True


#: An escape spelling printable ASCII (``\u0041``): encoders write a few (``\u003c`` for
#: ``<``); a secret of letters and digits can only be hidden that way.
_ESCAPED_ASCII = re.compile(rb"\\u00[2-7][0-9a-fA-F]")


def _escapes_may_spell(body: bytes, secret: str) -> bool:
    r"""Whether JSON escapes in ``body`` could spell part of ``secret`` — cheap, erring on
    the side of decoding: ``\/`` for a secret with a slash, ``\uXXXX`` for one beyond
    ASCII (``ensure_ascii`` encoders), any escape for one with a quote, a backslash or a
    control character, and printable ASCII spelled the long way for any secret."""
    if b"\\" not in body:
        return False
    if _ESCAPED_ASCII.search(body) is not None:
        return True
    if "/" in secret and b"\\/" in body:
        return True
    if not secret.isascii() and b"\\u" in body:
        return True
    return any(c in '"\\' or c < " " for c in secret)


def _without(value: Any, secret: str) -> Any:
    """``value`` with ``secret`` replaced inside every string value (keys untouched)."""
    if isinstance(value, str):
        return value.replace(secret, MASK)
    if isinstance(value, list):
        return [_without(v, secret) for v in value]
    if isinstance(value, dict):
        return {k: _without(v, secret) for k, v in value.items()}
    return value

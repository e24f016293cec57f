"""Secret values are masked out of a webhook body before anything keeps it.

Evolution API puts its API key in every webhook body (``"apikey": "…"``). The key has
done its work once the webhook is verified; journal rows, dead letters and spool files
outlive that moment and are read by people and tools, so they keep the body with the
value replaced by ``"***"``. Nothing downstream needs it: replay does not verify again.
"""

from __future__ import annotations

import msgspec
import orjson

MASK = "***"


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

    The provider's configured ``secret`` is masked wherever it appears (a body that is
    not JSON at all still must not keep it); for Evolution, so is the body's own
    ``apikey`` value, which may be an instance token other than the configured key.
    """
    masked = False
    if secret and secret.encode() in body:
        body, masked = body.replace(secret.encode(), MASK.encode()), True
    if provider != "evolution" or b"apikey" not in body:
        return body, masked
    value = body_api_key(body)
    if not value or value == MASK:
        return body, masked
    encoded = orjson.dumps(value)  # the value as JSON writes it, quotes included
    if encoded in body:
        return body.replace(encoded, orjson.dumps(MASK)), True
    # Written with escapes (``\u0041…``): rewrite the document with the value masked.
    document = msgspec.json.decode(body)
    document["apikey"] = MASK
    return msgspec.json.encode(document), True

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


def mask_secrets(provider: str, body: bytes) -> tuple[bytes, bool]:
    """The body to keep, and whether anything was masked in it."""
    if provider != "evolution" or b"apikey" not in body:
        return body, False
    secret = body_api_key(body)
    if not secret or secret == MASK:
        return body, False
    encoded = orjson.dumps(secret)  # the value as JSON writes it, quotes included
    if encoded in body:
        return body.replace(encoded, orjson.dumps(MASK)), True
    # Written with escapes (``\u0041…``): rewrite the document with the value masked.
    document = msgspec.json.decode(body)
    document["apikey"] = MASK
    return msgspec.json.encode(document), True

"""Webhook verification, constant-time, before anything else looks at a body.

Each provider proves itself differently: Cloud API signs the raw body with the app
secret (``X-Hub-Signature-256: sha256=<hex>``), the Baileys bridge does the same with a
shared secret (``X-Wacanon-Signature``), Evolution sends its API key (an ``apikey``
header, or the body's ``apikey`` field), the simulated provider a bearer token. A
provider with no secret configured refuses everything unless ``allow_unsigned`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from wacanon.errors import VerificationError
from wacanon.ingest.masking import body_api_key


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _check_signature(header: str | None, secret: str, body: bytes, name: str) -> None:
    if not header:
        raise VerificationError(f"missing {name} header")
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        raise VerificationError(f"{name} must be 'sha256=<hex>'")
    expected = hmac_sha256_hex(secret, body).encode()
    if not hmac.compare_digest(given.strip().lower().encode("utf-8", "replace"), expected):
        raise VerificationError(f"{name} does not match the body")


def verify(
    provider: str,
    secret: str | None,
    allow_unsigned: bool,
    headers: Mapping[str, str],
    body: bytes,
) -> bool:
    """True when verified, False when accepted unverified; raises VerificationError otherwise.

    ``headers`` must be case-insensitive (Starlette's are).
    """
    if not secret:
        if allow_unsigned:
            return False
        raise VerificationError(f"{provider} has no secret configured and allow_unsigned is off")
    if provider == "cloud_api":
        _check_signature(headers.get("x-hub-signature-256"), secret, body, "X-Hub-Signature-256")
    elif provider == "baileys":
        _check_signature(headers.get("x-wacanon-signature"), secret, body, "X-Wacanon-Signature")
    elif provider == "evolution":
        given = headers.get("apikey") or body_api_key(body)
        if not given:
            raise VerificationError("missing API key (apikey header or body field)")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode()):
            raise VerificationError("wrong API key")
    else:
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise VerificationError("missing 'Authorization: Bearer <token>' header")
        if not hmac.compare_digest(token.strip().encode("utf-8", "replace"), secret.encode()):
            raise VerificationError("wrong bearer token")
    return True

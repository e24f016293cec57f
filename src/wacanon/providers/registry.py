"""The provider registry and the library's ``normalize`` call.

Adding a provider is adding a module with a ``normalize(body, ctx)`` function and one
line in :data:`PROVIDERS`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from wacanon.canonical.times import as_utc
from wacanon.errors import UnknownProviderError
from wacanon.providers import baileys, cloud_api, evolution, simulated
from wacanon.providers.common import NormalizeContext, NormalizeError, Normalizer, NormalizeResult

PROVIDERS: Mapping[str, Normalizer] = {
    "cloud_api": cloud_api.normalize,
    "evolution": evolution.normalize,
    "baileys": baileys.normalize,
    "simulated": simulated.normalize,
}


def normalize(
    provider: str,
    body: bytes | str,
    *,
    account: str | None = None,
    received_at: datetime | None = None,
    correlation_id: str | None = None,
    shopper_id: str | None = None,
    shopper_of: Callable[[str], str | None] | None = None,
    signature_valid: bool = False,
) -> NormalizeResult:
    """Turn one provider webhook body into canonical events.

    Never raises for bad data: invalid JSON and shapes the normalizer does not understand
    come back in ``.errors``, beside whatever events could still be read. Raises
    :class:`~wacanon.errors.UnknownProviderError` only for a provider name it does not know.
    ``account`` overrides the account id the payload names; ``received_at`` defaults to now
    (a naive time is taken as UTC).
    """
    normalizer = PROVIDERS.get(provider)
    if normalizer is None:
        raise UnknownProviderError(provider, tuple(PROVIDERS))
    ctx = NormalizeContext(
        received_at=as_utc(received_at or datetime.now(UTC)),
        correlation_id=correlation_id or str(uuid.uuid4()),
        account=account,
        shopper_id=shopper_id,
        shopper_of=shopper_of,
        signature_valid=signature_valid,
    )
    try:
        return normalizer(body, ctx)
    except Exception as exc:  # noqa: BLE001 - a normalizer bug must not lose the webhook
        # Normalizers return error values for bad data; reaching here is a bug of ours.
        # Report it as this body's error so the caller journals and dead-letters it.
        message = f"normalizer failed ({type(exc).__name__}: {exc}); please report this payload"
        return NormalizeResult(errors=[NormalizeError("$", message, code="internal")])

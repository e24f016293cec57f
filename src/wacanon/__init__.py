"""wacanon: WhatsApp provider webhooks in, one stream of canonical events out.

The public surface is small on purpose; everything else is internal and may move.
"""

from __future__ import annotations

from wacanon.canonical.schema import CanonicalEvent
from wacanon.errors import UnknownProviderError, WacanonError
from wacanon.providers.common import NormalizeError, NormalizeResult
from wacanon.providers.registry import PROVIDERS, normalize

__version__ = "0.1.0"

__all__ = [
    "PROVIDERS",
    "CanonicalEvent",
    "NormalizeError",
    "NormalizeResult",
    "UnknownProviderError",
    "WacanonError",
    "normalize",
]

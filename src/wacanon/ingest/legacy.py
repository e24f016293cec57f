"""Which account a webhook body names, read cheaply for legacy passthrough: the target
is chosen before (and whatever) wacanon's own verification and normalization do.

Pure and forgiving: a body that is not JSON, or does not say, names no account — it goes
to the provider's ``[legacy]`` target.
"""

from __future__ import annotations

from typing import Any

import orjson


def accounts_of(provider: str, body: bytes) -> list[str]:
    """The account ids a webhook body names (Cloud API: every entry's
    ``phone_number_id``; Evolution: ``instance``; Baileys: ``session``; simulated:
    ``account``)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    if provider == "cloud_api":
        found: list[str] = []
        for entry in _list(data.get("entry")):
            for change in _list(entry.get("changes") if isinstance(entry, dict) else None):
                value = change.get("value") if isinstance(change, dict) else None
                meta = value.get("metadata") if isinstance(value, dict) else None
                number = meta.get("phone_number_id") if isinstance(meta, dict) else None
                if isinstance(number, str) and number not in found:
                    found.append(number)
        return found
    key = {"evolution": "instance", "baileys": "session", "simulated": "account"}.get(provider)
    value = data.get(key) if key else None
    return [value] if isinstance(value, str) and value else []


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []

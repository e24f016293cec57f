"""JSON replies, built the one way every endpoint answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


def reply(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    """``body`` as JSON (orjson) with ``status``."""
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )

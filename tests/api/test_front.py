"""The webhook dispatcher in front of the app matches exactly what the routes would."""

from __future__ import annotations

import pytest
from starlette.routing import Match

from wacanon.api.routes.webhooks import evolution_by_event, match_post, post_routes, webhook


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/cloud_api",
        "/webhooks/evolution",
        "/webhooks/evolution/messages-upsert",
        "/webhooks/evolution/MESSAGES_UPSERT",
        "/webhooks/nobody",
        "/webhooks/",
        "/webhooks/evolution/",
        "/webhooks/evolution/a/b",
        "/webhooks/cloud_api/extra",
        "/webhooksx/cloud_api",
        "/health",
    ],
)
def test_match_post_agrees_with_the_routes(path: str) -> None:
    scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
    expected = None
    for route in post_routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            expected = (route.endpoint, child["path_params"])
            break
    assert match_post(path) == expected


def test_match_post_names_the_handlers() -> None:
    assert match_post("/webhooks/baileys") == (webhook, {"provider": "baileys"})
    assert match_post("/webhooks/evolution/x") == (evolution_by_event, {"event": "x"})

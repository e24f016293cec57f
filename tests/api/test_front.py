"""The webhook dispatcher in front of the app matches exactly the webhook POST paths."""

from __future__ import annotations

import pytest

from wacanon.api.routes.webhooks import evolution_by_event, match_post, webhook


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/webhooks/cloud_api", (webhook, {"provider": "cloud_api"})),
        ("/webhooks/evolution", (webhook, {"provider": "evolution"})),
        ("/webhooks/evolution/messages-upsert", (evolution_by_event, {"event": "messages-upsert"})),
        ("/webhooks/evolution/MESSAGES_UPSERT", (evolution_by_event, {"event": "MESSAGES_UPSERT"})),
        ("/webhooks/nobody", (webhook, {"provider": "nobody"})),
        ("/webhooks/", None),
        ("/webhooks/evolution/", None),
        ("/webhooks/evolution/a/b", None),
        ("/webhooks/cloud_api/extra", None),
        ("/webhooksx/cloud_api", None),
        ("/health", None),
    ],
)
def test_match_post_matches_exactly_the_webhook_paths(path: str, expected: object) -> None:
    """``/webhooks/{provider}`` and ``/webhooks/evolution/{event}``, a parameter never
    spanning a ``/``; everything else is the app's."""
    assert match_post(path) == expected


def test_match_post_names_the_handlers() -> None:
    assert match_post("/webhooks/baileys") == (webhook, {"provider": "baileys"})
    assert match_post("/webhooks/evolution/x") == (evolution_by_event, {"event": "x"})

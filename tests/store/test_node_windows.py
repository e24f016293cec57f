"""Each node's live window in the database (the console adds them up), both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from wacanon.store import node_windows
from wacanon.store.database import create_engine


def test_publish_replaces_forgets_and_withdraws(database_url: str) -> None:
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as connection:
            node_windows.publish(connection, "old:1", {"webhooks": 1}, now - timedelta(hours=2))
            node_windows.publish(connection, "a:1", {"webhooks": 1}, now - timedelta(seconds=40))
            node_windows.publish(connection, "b:2", {"webhooks": 2}, now)
            node_windows.publish(connection, "a:1", {"webhooks": 5}, now)  # the same node again
        with engine.connect() as connection:
            fresh = node_windows.fresh(connection, now)
        assert [(w.node, w.counts["webhooks"]) for w in fresh] == [("a:1", 5), ("b:2", 2)]
        with engine.begin() as connection:
            node_windows.withdraw(connection, "b:2")
            later = now + timedelta(seconds=node_windows.FRESH_SECONDS - 1)
            assert [w.node for w in node_windows.fresh(connection, later)] == ["a:1"]
            everything = node_windows.fresh(connection, now - timedelta(hours=3))
            assert [w.node for w in everything] == ["a:1"]  # "old:1" was forgotten
    finally:
        engine.dispose()

"""The flags a server obeys, re-read from the database: one INFO line per change, per
server — not at start-up, not again from the writer process's own copy."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from wacanon.ingest.flag_cache import FlagCache
from wacanon.store.database import create_engine, upgrade
from wacanon.store.repository import set_flag


def test_a_change_is_announced_once(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade(engine)
    with engine.begin() as connection:
        set_flag(connection, "*", "WHATSAPP_CANONICAL_SHADOW_MODE", "false")
    serving = FlagCache(engine, {}, 2.0)
    writer_side = FlagCache(engine, {}, 2.0, announce=False)
    with capture_logs() as at_start:
        serving.refresh()
        writer_side.refresh()
    assert not serving.for_shopper("shop-1").shadow  # read, and obeyed
    with engine.begin() as connection:
        set_flag(connection, "*", "WHATSAPP_CANONICAL_SHADOW_MODE", "true")
    with capture_logs() as after_a_change:
        serving.refresh()
        writer_side.refresh()
        serving.refresh()  # nothing changed since
    engine.dispose()
    assert [e["event"] for e in at_start] == []
    assert [e["event"] for e in after_a_change] == ["flag overrides changed"]
    assert serving.for_shopper("shop-1").shadow
    assert writer_side.for_shopper("shop-1").shadow

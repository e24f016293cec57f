"""``wacanon skm``, ``wacanon queue list`` and ``wacanon conversations assign`` as an
operator runs them (real subprocesses on a SQLite file): the directory changes with its
consequences printed, and refusals are one line with the documented exit code."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from tests.ingest.test_routing_live import ROUTING_ON
from tests.routing.events import normalized, text_body
from tests.test_cli_service import config, wacanon
from wacanon.ingest.pipeline import event_row
from wacanon.store.database import create_engine
from wacanon.store.repository import write_events


def _queue_three_customers(tmp_path: Path) -> None:
    """Three customers writing a minute ago (recent: no idle close), queued for routing."""
    now = int(time.time())
    bodies = [
        text_body(f"M{i}", f"55119876500{i:02d}@s.whatsapp.net", at=now - 60 + i) for i in range(3)
    ]
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with engine.begin() as connection:
            write_events(connection, [event_row(e) for e in normalized("evolution", *bodies)])
    finally:
        engine.dispose()


def test_the_directory_from_the_command_line(tmp_path: Path) -> None:
    path = str(config(tmp_path))
    assert wacanon(tmp_path, "db", "upgrade", "--config", path).returncode == 0
    for skm, name in (("skm-ana", "Ana"), ("skm-bia", "Bia")):
        added = wacanon(
            tmp_path, "skm", "add", skm, "--shopper", "shop-1", "--name", name,
            "--capacity", "1", "--config", path,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert f"added {skm} to shopper shop-1 (capacity 1)" in added.stdout
    _queue_three_customers(tmp_path)
    rebuilt = wacanon(
        tmp_path, "conversations", "rebuild", "--shopper", "shop-1", "--config", path,
        env=ROUTING_ON,
    )  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr

    waiting = wacanon(tmp_path, "queue", "list", "--json", "--config", path)
    (head,) = orjson.loads(waiting.stdout)["items"]
    listed = wacanon(tmp_path, "skm", "list", "--config", path).stdout
    assert "skm-ana" in listed
    assert "1/1" in listed

    # Raising Bia's capacity assigns the waiting one at once, and says so.
    raised = wacanon(tmp_path, "skm", "update", "skm-bia", "--capacity", "2", "--config", path)
    assert raised.returncode == 0, raised.stderr
    assert f"{head['conversation_id']} → skm-bia" in raised.stdout
    assert "1 assignment(s) followed" in raised.stdout
    assert "nobody waits" in wacanon(tmp_path, "queue", "list", "--config", path).stdout

    # Ana leaves: her conversation goes to Bia (who has room for it? no: 2/2) → waits.
    left = wacanon(tmp_path, "skm", "deactivate", "skm-ana", "--config", path)
    assert left.returncode == 0, left.stderr
    assert "(waits in the queue) (was skm-ana)" in left.stdout
    (orphan,) = orjson.loads(wacanon(tmp_path, "queue", "list", "--json", "--config", path).stdout)[
        "items"
    ]

    # By hand to Bia, above her capacity: the reason says so.
    manual = wacanon(
        tmp_path, "conversations", "assign", orphan["conversation_id"], "skm-bia", "--config", path
    )
    assert manual.returncode == 0, manual.stderr
    assert "above capacity" in manual.stdout
    shown = orjson.loads(
        wacanon(tmp_path, "skm", "show", "skm-bia", "--json", "--config", path).stdout
    )
    assert (shown["open"], shown["capacity"]) == (3, 2)

    # Refusals: one line, exit 1 for what does not exist, 2 for what cannot be done.
    inactive = wacanon(
        tmp_path, "conversations", "assign", orphan["conversation_id"], "skm-ana", "--config", path
    )
    assert inactive.returncode == 2
    assert inactive.stderr.strip() == "wacanon: skm-ana is inactive: activate them first"
    missing = wacanon(tmp_path, "skm", "show", "skm-nobody", "--config", path)
    assert (missing.returncode, missing.stderr.strip()) == (1, "wacanon: no SKM 'skm-nobody'")
    twice = wacanon(
        tmp_path, "skm", "add", "skm-ana", "--shopper", "shop-1", "--name", "A", "--config", path
    )
    assert twice.returncode == 2
    assert "exists already" in twice.stderr
    typo = wacanon(
        tmp_path, "skm", "add", "skm-x", "--shopper", "shop-l", "--name", "X", "--config", path
    )
    assert typo.returncode == 2
    assert typo.stderr.strip() == "wacanon: shopper_id: no shopper 'shop-l' (known: shop-1)"
    empty = wacanon(tmp_path, "skm", "update", "skm-ana", "--config", path)
    assert empty.returncode == 2
    assert "nothing to change" in empty.stderr

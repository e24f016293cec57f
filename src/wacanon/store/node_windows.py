"""Each serving process's live window, shared through the database: one row per node,
rewritten every few seconds, so the console (on any node) adds up all of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from wacanon.canonical.times import as_utc
from wacanon.store.tables import node_windows

#: A node that has not published for this long is gone (stopped, or cut off).
FRESH_SECONDS = 30.0
#: Rows of nodes gone for this long are deleted.
FORGET_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class NodeWindow:
    node: str
    updated_at: datetime
    counts: dict[str, Any]


def publish(connection: sa.Connection, node: str, counts: dict[str, Any], now: datetime) -> None:
    """Write this node's window (and forget nodes long gone)."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    values = {"node": node, "updated_at": now, "counts": orjson.dumps(counts).decode()}
    statement = insert(node_windows).values(values)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[node_windows.c.node],
            set_={"updated_at": values["updated_at"], "counts": values["counts"]},
        )
    )
    forgotten = now - timedelta(seconds=FORGET_SECONDS)
    connection.execute(node_windows.delete().where(node_windows.c.updated_at < forgotten))


def fresh(connection: sa.Connection, now: datetime) -> list[NodeWindow]:
    """The windows of the nodes that published within :data:`FRESH_SECONDS`, by node."""
    since = now - timedelta(seconds=FRESH_SECONDS)
    rows = connection.execute(
        sa.select(node_windows)
        .where(node_windows.c.updated_at >= since)
        .order_by(node_windows.c.node)
    ).all()
    return [NodeWindow(r.node, as_utc(r.updated_at), orjson.loads(r.counts)) for r in rows]


def withdraw(connection: sa.Connection, node: str) -> None:
    """A node stopping: its figures leave every console at once."""
    connection.execute(node_windows.delete().where(node_windows.c.node == node))

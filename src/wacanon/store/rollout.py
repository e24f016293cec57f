"""Rollbacks: what ``wacanon rollback`` replaced and when, so a resume can undo exactly it.

A rollback writes overrides (switches off) at one scope — a shopper, or ``*`` for every
shopper — and records, in the same transaction, the override values it replaced (``None``
where there was no override, so the resume removes its own instead of pinning a value)
and the moment. Only one rollback per scope is active (not yet resumed) at a time: a
second one while it is in force keeps the first one's record, so the resume still
restores what was there *before* the rollback, not the rollback's own values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from wacanon.flags import GLOBAL
from wacanon.probe import PROBE
from wacanon.store.repository import flag_overrides_map, set_flag, unset_flag
from wacanon.store.routing import lock, reset_shopper
from wacanon.store.tables import dead_letters, events, rollbacks, skms, webhook_journal


@dataclass(frozen=True, slots=True)
class Rollback:
    id: int
    scope: str
    started_at: datetime
    #: (shopper or ``*``, flag name, the override value replaced or ``None``)
    replaced: list[tuple[str, str, str | None]]
    resumed_at: datetime | None = None
    resumed_counts: dict[str, Any] | None = None


def _from_row(row: sa.Row[Any]) -> Rollback:
    return Rollback(
        id=row.id,
        scope=row.scope,
        started_at=_utc(row.started_at),
        replaced=[(shopper, name, value) for shopper, name, value in orjson.loads(row.replaced)],
        resumed_at=_utc(row.resumed_at) if row.resumed_at is not None else None,
        resumed_counts=orjson.loads(row.resumed_counts) if row.resumed_counts else None,
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def active(connection: sa.Connection, scope: str | None = None) -> Rollback | None:
    """The latest rollback not yet resumed (of one scope, or of any)."""
    query = sa.select(rollbacks).where(rollbacks.c.resumed_at.is_(None))
    if scope is not None:
        query = query.where(rollbacks.c.scope == scope)
    row = connection.execute(query.order_by(rollbacks.c.id.desc()).limit(1)).first()
    return _from_row(row) if row is not None else None


def history(connection: sa.Connection, limit: int = 20) -> list[Rollback]:
    rows = connection.execute(sa.select(rollbacks).order_by(rollbacks.c.id.desc()).limit(limit))
    return [_from_row(row) for row in rows]


def start(
    connection: sa.Connection, scope: str, values: dict[str, str], now: datetime | None = None
) -> tuple[Rollback, bool]:
    """Write ``values`` as overrides at ``scope`` and remember what they replaced.

    Every shopper's own override of those flags is replaced too when ``scope`` is ``*``
    (it would beat the global value). Returns the rollback in force and whether it is
    new (``False``: one was already active for the scope; its record is kept and the
    values are written again, in case someone turned a flag back on by hand meanwhile).
    """
    lock(connection)  # two operators rolling back at once: one record, the first's
    existing = active(connection, scope)
    stored = flag_overrides_map(connection)
    targets = [(scope, name) for name in values]
    if scope == GLOBAL:  # a shopper's own override would beat the global one
        targets += sorted(key for key in stored if key[0] != GLOBAL and key[1] in values)
    replaced = [(shopper, name, stored.get((shopper, name))) for shopper, name in targets]
    for shopper, name in targets:
        set_flag(connection, shopper, name, values[name])
    if existing is not None:
        return existing, False
    moment = now or datetime.now(UTC)
    new_id = connection.execute(
        rollbacks.insert().values(
            scope=scope, started_at=moment, replaced=orjson.dumps(replaced).decode()
        )
    ).inserted_primary_key
    assert new_id is not None
    return Rollback(int(new_id[0]), scope, moment, replaced), True


def restore(connection: sa.Connection, rollback: Rollback) -> None:
    """Put back the overrides the rollback replaced (removing those it added)."""
    lock(connection)
    for shopper, name, value in rollback.replaced:
        if value is None:
            unset_flag(connection, shopper, name)
        else:
            set_flag(connection, shopper, name, value)


def finish(
    connection: sa.Connection, rollback_id: int, counts: dict[str, Any], now: datetime | None = None
) -> None:
    connection.execute(
        rollbacks.update()
        .where(rollbacks.c.id == rollback_id)
        .values(resumed_at=now or datetime.now(UTC), resumed_counts=orjson.dumps(counts).decode())
    )


def purge_probe(connection: sa.Connection) -> None:
    """Delete everything the probes of ``wacanon rollout check`` left: the reserved
    shopper's conversations and graph (by the rebuild's reset, which also keeps a
    concurrent routing batch from writing after it), events, journal rows, dead letters
    and SKMs."""
    lock(connection)
    reset_shopper(connection, PROBE)
    probe_journal = sa.select(webhook_journal.c.correlation_id).where(
        webhook_journal.c.shopper_id == PROBE
    )
    connection.execute(
        dead_letters.delete().where(dead_letters.c.correlation_id.in_(probe_journal))
    )
    connection.execute(events.delete().where(events.c.shopper_id == PROBE))
    connection.execute(webhook_journal.delete().where(webhook_journal.c.shopper_id == PROBE))
    connection.execute(skms.delete().where(skms.c.shopper_id == PROBE))

"""The SKM directory and the waiting queue in the database (docs/assignment.md).

Routing batches load the directory with each SKM's load (their open conversations) and
the head of each shopper's queue; the projection decides; :func:`save_directory` writes
back what the decisions changed. Batches are serialized by the routing lock
(``wacanon.store.routing``), so counts read in a batch are the counts: no SKM is
assigned above capacity even with several processes on one database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from wacanon.canonical.times import as_utc
from wacanon.config import SkmConfig
from wacanon.routing.directory import Directory, Skm
from wacanon.routing.state import RoutingState
from wacanon.routing.threads import identity_of_wa_id
from wacanon.store.routing import _conversation, _insert, _utc_or_none
from wacanon.store.tables import assignment_cursors, conversations, skms

#: How many of a shopper's waiting conversations a batch loads: one per event it could
#: close is enough to keep the queue first in, first out.
QUEUE_HEAD = 500


@dataclass(frozen=True, slots=True)
class Rules:
    """What the configuration and the flags say, per batch."""

    account_skms: Mapping[tuple[str, str], str]
    default_skms: Mapping[str, str]
    policies: Mapping[str, str]
    group_routing: frozenset[str]


def _skm(row: Any) -> Skm:
    return Skm(
        id=row.id,
        shopper_id=row.shopper_id,
        name=row.name,
        wa_ids=tuple(orjson.loads(row.wa_ids)),
        capacity=int(row.capacity),
        active=bool(row.active),
        last_assigned_at=_utc_or_none(row.last_assigned_at),
    )


def shoppers_with_skms(connection: sa.Connection, shoppers: Sequence[str]) -> list[str]:
    if not shoppers:
        return []
    query = sa.select(skms.c.shopper_id).where(skms.c.shopper_id.in_(sorted(set(shoppers))))
    return sorted({str(s) for (s,) in connection.execute(query.distinct())})


def load_waiting(
    connection: sa.Connection, state: RoutingState, shoppers: Sequence[str], limit: int = QUEUE_HEAD
) -> None:
    """The oldest waiting conversations of these shoppers, into the state (before
    :func:`load_directory`, which counts the loaded conversations)."""
    for shopper in shoppers:
        query = (
            sa.select(conversations)
            .where(
                conversations.c.shopper_id == shopper, conversations.c.waiting_since.is_not(None)
            )
            .order_by(conversations.c.waiting_since, conversations.c.id)
            .limit(limit)
        )
        queue = []
        for row in connection.execute(query):
            c = state.by_id.get(row.id)
            if c is None:
                c = _conversation(row)
                state.add_conversation(c)
            queue.append(c)
        state.waiting[shopper] = queue


def load_directory(
    connection: sa.Connection, state: RoutingState, shoppers: Sequence[str], rules: Rules
) -> None:
    """The shoppers' SKMs with their load, once every conversation is loaded."""
    if not shoppers:
        state.directory = None
        return
    wanted = sorted(set(shoppers))
    found = {
        row.id: _skm(row)
        for row in connection.execute(sa.select(skms).where(skms.c.shopper_id.in_(wanted)))
    }
    if not found:
        state.directory = None
        return
    c = conversations.c
    counts = sa.select(c.skm_id, sa.func.count()).where(
        c.shopper_id.in_(wanted), c.status == "open", c.skm_id.is_not(None)
    )
    for skm_id, count in connection.execute(counts.group_by(c.skm_id)):
        if skm_id in found:
            found[skm_id].unloaded_open = int(count)
    for loaded in state.by_id.values():  # counted live by the projection instead
        if loaded.status == "open" and loaded.skm_id in found:
            found[loaded.skm_id].unloaded_open -= 1
    cursors = {
        str(shopper): str(skm_id)
        for shopper, skm_id in connection.execute(
            sa.select(assignment_cursors).where(assignment_cursors.c.shopper_id.in_(wanted))
        )
    }
    state.directory = Directory(
        skms=found,
        account_skms=rules.account_skms,
        default_skms=rules.default_skms,
        policies=rules.policies,
        group_routing=rules.group_routing,
        cursors=cursors,
    )


def save_directory(connection: sa.Connection, directory: Directory | None) -> None:
    if directory is None:
        return
    changed = [s for s in directory.skms.values() if s.changed]
    if changed:
        connection.execute(
            skms.update()
            .where(skms.c.id == sa.bindparam("sid"))
            .values(last_assigned_at=sa.bindparam("at")),
            [{"sid": s.id, "at": s.last_assigned_at} for s in changed],
        )
    rows = [{"shopper_id": s, "skm_id": directory.cursors[s]} for s in directory.changed_cursors]
    if rows:
        statement = _insert(connection, assignment_cursors)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["shopper_id"], set_={"skm_id": statement.excluded.skm_id}
            ),
            rows,
        )


# ------------------------------------------------------------------ the directory itself


def config_hash(skm: SkmConfig) -> str:
    return hashlib.sha256(orjson.dumps(skm.model_dump(), option=orjson.OPT_SORT_KEYS)).hexdigest()


def spelled(wa_ids: Sequence[str]) -> list[str]:
    """``wa_ids`` as the graph spells them (digits, ``lid:…``, ``bsuid:…``); raises
    ``ValueError`` naming one that names nobody."""
    out = []
    for wa_id in wa_ids:
        identity = identity_of_wa_id(wa_id)
        if identity is None:
            raise ValueError(f"wa_ids: {wa_id!r} is not a WhatsApp number, lid:… or bsuid:…")
        if identity not in out:
            out.append(identity)
    return out


@dataclass(frozen=True, slots=True)
class Change:
    """What one directory write did to a shopper's SKMs: who became inactive (their open
    conversations must go to someone else) — anyone else may have gained room."""

    shopper_id: str
    deactivated: frozenset[str] = frozenset()


#: What a runtime change may set (``PATCH /v1/skms/{id}``, ``wacanon skm update``).
EDITABLE = ("name", "wa_ids", "capacity", "active")


class DirectoryError(ValueError):
    """A directory write refused: ``status`` is the HTTP answer it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def get_skm(connection: sa.Connection, skm_id: str) -> Any:
    return connection.execute(sa.select(skms).where(skms.c.id == skm_id)).first()


def _check_wa_ids(
    connection: sa.Connection, shopper_id: str, skm_id: str, wa_ids: Sequence[str]
) -> list[str]:
    """The ids spelled as the graph spells them; an id another of the shopper's SKMs
    writes from is refused (who wrote would be ambiguous)."""
    try:
        mine = spelled(wa_ids)
    except ValueError as exc:
        raise DirectoryError(422, str(exc)) from None
    others = connection.execute(
        sa.select(skms.c.id, skms.c.wa_ids).where(
            skms.c.shopper_id == shopper_id, skms.c.id != skm_id
        )
    )
    for other, theirs in others:
        shared = sorted(set(mine) & set(orjson.loads(theirs)))
        if shared:
            raise DirectoryError(409, f"wa_ids: {shared[0]} is already {other}'s")
    return mine


def add_skm(connection: sa.Connection, entry: SkmConfig) -> Change:
    """A new SKM at runtime (``POST /v1/skms``, ``wacanon skm add``)."""
    if get_skm(connection, entry.id) is not None:
        raise DirectoryError(409, f"an SKM {entry.id!r} exists already")
    now = datetime.now(UTC)
    connection.execute(
        skms.insert().values(
            id=entry.id,
            shopper_id=entry.shopper_id,
            name=entry.name,
            wa_ids=orjson.dumps(
                _check_wa_ids(connection, entry.shopper_id, entry.id, entry.wa_ids)
            ).decode(),
            capacity=entry.capacity,
            active=entry.active,
            config_hash=None,  # the configuration never set it: a later [[skms]] entry wins
            created_at=now,
            updated_at=now,
        )
    )
    return Change(entry.shopper_id)


def update_skm(connection: sa.Connection, skm_id: str, changes: Mapping[str, Any]) -> Change:
    """Change an SKM at runtime. It keeps its configuration hash, so it keeps the new
    values until its ``[[skms]]`` entry itself changes."""
    row = get_skm(connection, skm_id)
    if row is None:
        raise DirectoryError(404, f"no SKM {skm_id!r}")
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise DirectoryError(422, f"{unknown[0]}: not a field one can change")
    values: dict[str, Any] = {k: v for k, v in changes.items() if k != "wa_ids"}
    if "wa_ids" in changes:
        spelled_ids = _check_wa_ids(connection, row.shopper_id, skm_id, changes["wa_ids"])
        values["wa_ids"] = orjson.dumps(spelled_ids).decode()
    if values:
        values["updated_at"] = datetime.now(UTC)
        connection.execute(skms.update().where(skms.c.id == skm_id).values(**values))
    lost = bool(row.active) and changes.get("active") is False
    return Change(row.shopper_id, frozenset({skm_id}) if lost else frozenset())


def open_of(connection: sa.Connection, state: RoutingState, skm_ids: Sequence[str]) -> None:
    """The open conversations of these SKMs, into the state."""
    if not skm_ids:
        return
    c = conversations.c
    query = sa.select(conversations).where(c.status == "open", c.skm_id.in_(sorted(skm_ids)))
    for row in connection.execute(query):
        if row.id not in state.by_id:
            state.add_conversation(_conversation(row))


def unanswered(
    connection: sa.Connection, state: RoutingState, shopper_id: str, cutoff: datetime
) -> None:
    """Into the state: the shopper's open private conversations assigned before
    ``cutoff`` whose SKM has not written since, with a customer message unanswered."""
    c = conversations.c
    query = sa.select(conversations).where(
        c.shopper_id == shopper_id,
        c.status == "open",
        c.chat_type == "private",
        c.skm_id.is_not(None),
        c.assigned_at < cutoff,
        c.last_inbound_at.is_not(None),
        sa.or_(
            c.last_outbound_at.is_(None),
            sa.and_(c.last_outbound_at < c.assigned_at, c.last_outbound_at < c.last_inbound_at),
        ),
    )
    for row in connection.execute(query.order_by(c.assigned_at, c.id)):
        if row.id not in state.by_id:
            state.add_conversation(_conversation(row))


def sync_config(connection: sa.Connection, configured: Sequence[SkmConfig]) -> list[Change]:
    """Seed the directory from ``[[skms]]``: an SKM not in the table is added; one whose
    configuration entry changed since it was last applied takes the new values; one
    changed only at runtime keeps them (the runtime wins until the config changes it).
    What changed, per SKM written."""
    now = datetime.now(UTC)
    existing = {row.id: row for row in connection.execute(sa.select(skms))}
    written: list[Change] = []
    for entry in configured:
        digest = config_hash(entry)
        row = existing.get(entry.id)
        if row is not None and row.config_hash == digest:
            continue
        if row is not None and row.shopper_id != entry.shopper_id:
            raise ValueError(
                f"skms: {entry.id!r} belongs to shopper {row.shopper_id!r} in the database, "
                f"not {entry.shopper_id!r}"
            )
        values = {
            "shopper_id": entry.shopper_id,
            "name": entry.name,
            "wa_ids": orjson.dumps(spelled(entry.wa_ids)).decode(),
            "capacity": entry.capacity,
            "active": entry.active,
            "config_hash": digest,
            "updated_at": now,
        }
        if row is None:
            connection.execute(skms.insert().values(id=entry.id, created_at=now, **values))
        else:
            connection.execute(skms.update().where(skms.c.id == entry.id).values(**values))
        lost = row is not None and bool(row.active) and not entry.active
        written.append(Change(entry.shopper_id, frozenset({entry.id}) if lost else frozenset()))
    return written


def skm_dict(row: Any, open_count: int = 0) -> dict[str, Any]:
    return {
        "id": row.id,
        "shopper_id": row.shopper_id,
        "name": row.name,
        "wa_ids": orjson.loads(row.wa_ids),
        "capacity": int(row.capacity),
        "active": bool(row.active),
        "open": open_count,
        "last_assigned_at": None
        if row.last_assigned_at is None
        else as_utc(row.last_assigned_at).isoformat().replace("+00:00", "Z"),
    }


def list_skms(
    connection: sa.Connection, shoppers: frozenset[str] | None, skm_id: str | None = None
) -> list[dict[str, Any]]:
    query = sa.select(skms).order_by(skms.c.shopper_id, skms.c.id)
    if shoppers is not None:
        query = query.where(skms.c.shopper_id.in_(sorted(shoppers)))
    if skm_id is not None:
        query = query.where(skms.c.id == skm_id)
    rows = list(connection.execute(query))
    c = conversations.c
    counts: dict[str, int] = {}
    if rows:
        query = (
            sa.select(c.skm_id, sa.func.count())
            .where(c.status == "open", c.skm_id.in_([r.id for r in rows]))
            .group_by(c.skm_id)
        )
        counts = {str(k): int(v) for k, v in connection.execute(query)}
    return [skm_dict(r, int(counts.get(r.id, 0))) for r in rows]


def queue_of(connection: sa.Connection, shoppers: frozenset[str] | None) -> list[dict[str, Any]]:
    """Who waits for an SKM, oldest first."""
    c = conversations.c
    query = (
        sa.select(c.id, c.shopper_id, c.waiting_since)
        .where(c.waiting_since.is_not(None), c.status == "open")
        .order_by(c.waiting_since, c.id)
    )
    if shoppers is not None:
        query = query.where(c.shopper_id.in_(sorted(shoppers)))
    return [
        {
            "conversation_id": row.id,
            "shopper_id": row.shopper_id,
            "waiting_since": as_utc(row.waiting_since).isoformat().replace("+00:00", "Z"),
        }
        for row in connection.execute(query)
    ]

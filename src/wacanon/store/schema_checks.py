"""Is the schema what wacanon's tables declare: the tables, every named index and the
unique ``idempotency_key`` (``wacanon rollout check`` and ``wacanon doctor``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from wacanon.store.tables import events, metadata


@dataclass(frozen=True, slots=True)
class SchemaFound:
    tables: list[str]  # present, in dependency order
    missing_tables: list[str]
    indexes: int  # named indexes present
    missing_indexes: list[sa.Index]  # of the tables present
    unique_key: bool  # events.idempotency_key is unique

    @property
    def missing_index_names(self) -> list[str]:
        names = sorted(
            f"{i.table.name}.{i.name}" for i in self.missing_indexes if i.table is not None
        )
        return names if self.unique_key else [*names, "events: unique idempotency_key"]


def inspect_schema(engine: sa.Engine) -> SchemaFound:
    inspector = sa.inspect(engine)
    present = set(inspector.get_table_names())
    wanted = [
        index
        for table in metadata.sorted_tables
        if table.name in present
        for index in table.indexes
    ]
    found = {
        (name, index["name"])
        for name in present
        for index in [*inspector.get_indexes(name), *inspector.get_unique_constraints(name)]
    }
    missing = [i for i in wanted if i.table is not None and (i.table.name, i.name) not in found]
    return SchemaFound(
        tables=[t.name for t in metadata.sorted_tables if t.name in present],
        missing_tables=[t.name for t in metadata.sorted_tables if t.name not in present],
        indexes=len(wanted) - len(missing),
        missing_indexes=missing,
        unique_key=events.name in present and _has_unique_key(inspector),
    )


def create_statements(engine: sa.Engine, found: SchemaFound) -> list[str]:
    """The SQL that creates what is missing, in this database's dialect."""
    statements = [
        str(sa.schema.CreateIndex(index).compile(dialect=engine.dialect))
        for index in found.missing_indexes
    ]
    if not found.unique_key:  # the same in both dialects; fails while duplicates remain
        statements.append(
            "CREATE UNIQUE INDEX uq_events_idempotency_key ON events (idempotency_key)"
        )
    return statements


def _has_unique_key(inspector: Any) -> bool:
    keyed = [
        *inspector.get_unique_constraints("events"),
        *(i for i in inspector.get_indexes("events") if i.get("unique")),
    ]
    return any(c.get("column_names") == ["idempotency_key"] for c in keyed)

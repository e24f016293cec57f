"""Reads and writes of the store; the only module that speaks SQL.

:func:`write_batch` is the heart of durability and deduplication: the journal rows, the
event rows and the dead letters of many webhooks commit in one transaction (group
commit), and duplicates are found by the unique ``idempotency_key`` with
``INSERT … ON CONFLICT DO NOTHING`` — a conflict is an outcome, not an error, and there is
no check-then-insert race between concurrent redeliveries. Driver errors are translated
into :class:`~wacanon.errors.StoreError` at this edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from wacanon.probe import PROBE
from wacanon.store.tables import dead_letters, events, flag_overrides, metadata, webhook_journal


@dataclass(slots=True)
class JournalRow:
    """One received webhook, as the journal keeps it."""

    correlation_id: str
    received_at: datetime
    provider: str
    body: bytes
    body_sha256: str
    signature_valid: bool
    outcome: str
    path_event: str | None = None
    account_id: str | None = None
    shopper_id: str | None = None
    ignored: int = 0
    errors: int = 0
    body_masked: bool = False

    def __reduce__(self) -> tuple[type[JournalRow], tuple[Any, ...]]:
        """Pickled as its fields in order: the writer process receives thousands a second
        (``wacanon.ingest.writer_process``), and a slots class's default builds a state
        dict for each."""
        return JournalRow, _journal_fields(self)


@dataclass(slots=True)
class DeadLetter:
    kind: str
    error: str


@dataclass(slots=True)
class WebhookWrite:
    """Everything one webhook writes; ``events`` are rows for the events table."""

    journal: JournalRow
    events: list[dict[str, Any]] = field(default_factory=list)
    dead_letter: DeadLetter | None = None
    #: This webhook may have been partly written before under its correlation id (it is
    #: replayed from the spool, or retried whole after a part of it failed): rows found
    #: already stored under that id are its own (see ``_stored_by_same_delivery``).
    resumes: bool = False
    #: The last part of a webhook written over several transactions (see
    #: ``GroupCommitWriter``): the keys its earlier parts stored, and how many rows they had.
    stored_before: set[str] = field(default_factory=set)
    rows_before: int = 0

    def __reduce__(self) -> tuple[type[WebhookWrite], tuple[Any, ...]]:
        """Pickled as its fields in order (see :meth:`JournalRow.__reduce__`)."""
        return WebhookWrite, _write_fields(self)


_journal_fields = attrgetter(*(f.name for f in fields(JournalRow)))
_write_fields = attrgetter(*(f.name for f in fields(WebhookWrite)))


@dataclass(slots=True)
class WriteResult:
    """What one webhook's write did: which event keys were new, and whether it was journaled.

    ``refused`` names why the database refused the webhook's data: it was then kept as a
    ``store_error`` dead letter (journal row plus raw body), and its events were not stored
    — they are neither new nor duplicates.
    """

    new_keys: set[str]
    journaled: bool
    refused: str | None = None


def _insert(dialect: str, table: sa.Table) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


EVENT_COLUMNS = tuple(c.name for c in events.columns if c.name != "id")
JOURNAL_COLUMNS = tuple(c.name for c in webhook_journal.columns if c.name != "id")
#: The events-table columns that hold times (aware datetimes in a row).
TIME_COLUMNS = frozenset({"occurred_at", "received_at"})


@lru_cache(maxsize=512)
def _sqlite_insert_sql(table: str, columns: tuple[str, ...], key: str, rows: int) -> str:
    """``INSERT … VALUES (…), (…) ON CONFLICT (key) DO NOTHING`` for ``rows`` rows.

    The hot path of every SQLite commit: one statement per table per batch, compiled
    once per batch size, with parameters passed straight to the driver — SQLAlchemy's
    per-row parameter processing cost more than SQLite's own work.
    """
    group = "(" + ", ".join(["?"] * len(columns)) + ")"
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([group] * rows)} "
        f"ON CONFLICT ({key}) DO NOTHING"
    )


def _sqlite_params(columns: tuple[str, ...], rows: Sequence[dict[str, Any]]) -> list[Any]:
    """Flat driver parameters, times as SQLAlchemy stores them on SQLite (naive UTC text).

    Every text goes through :func:`storable`, so no value a provider sent can make the
    database refuse a row (or, on SQLite, be cut short by the tools reading it).
    """
    flat: list[Any] = []
    for row in rows:
        for c in columns:
            value = row[c]
            if c in TIME_COLUMNS:
                value = _sqlite_time(value)
            elif value.__class__ is str and "\x00" in value:
                value = storable(value)
            flat.append(value)
    return flat


def storable(text: str) -> str:
    """Text every database accepts: PostgreSQL refuses NUL characters in ``text`` columns
    (SQLite would keep them, and tools reading it would cut the value short), so a NUL
    becomes U+FFFD. The raw body, which keeps the exact bytes, is binary and untouched;
    the canonical JSON escapes NUL as ``\\u0000`` and never contains one.
    """
    return text.replace("\x00", "\ufffd")


def _sqlite_time(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _insert_many_returning(
    connection: sa.Connection,
    table: str,
    columns: tuple[str, ...],
    key: str,
    rows: Sequence[dict[str, Any]],
) -> set[str]:
    """Insert rows, skipping conflicts on ``key``; the keys actually inserted."""
    if connection.dialect.name == "postgresql":
        return _postgresql_inserted(connection, table, columns, key, rows)
    inserted: set[str] = set()
    per_statement = max(1, 30_000 // len(columns))  # SQLite allows 32,766 parameters
    for start in range(0, len(rows), per_statement):
        inserted |= _sqlite_inserted(
            connection, table, columns, key, rows[start : start + per_statement]
        )
    return inserted


@lru_cache(maxsize=16)
def _unnest_sql(table: str, columns: tuple[str, ...], key: str) -> str:
    """``INSERT … SELECT * FROM unnest(%b::type[], …) ON CONFLICT (key) DO NOTHING
    RETURNING key``: one array per column, whatever the number of rows."""
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT * FROM unnest({_arrays(table, columns)}) "
        f"ON CONFLICT ({key}) DO NOTHING RETURNING {key}"
    )


_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]


def _array_element(column_type: sa.types.TypeEngine[Any]) -> str:
    """The arrays' element type: a column's type, but text for every string type — an
    explicit cast to ``varchar(n)`` would cut a longer value short without a word, where
    the insert's own conversion refuses it (and the webhook becomes a dead letter)."""
    if isinstance(column_type, sa.String):
        return "TEXT"
    return str(column_type.compile(dialect=_POSTGRESQL))


def in_key_order(rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """``rows`` by ``key``, rows of one key in the order they came (the first is still
    the one inserted). Two writers inserting keys they share wait for each other's
    uncommitted rows; in whatever order the batches came, each could hold a key the
    other waits for — PostgreSQL's ``deadlock detected``, which spooled a whole batch.
    In one order for everyone, no wait goes round in a circle."""
    return sorted(rows, key=lambda row: row[key])


def _postgresql_inserted(
    connection: sa.Connection,
    table: str,
    columns: tuple[str, ...],
    key: str,
    rows: Sequence[dict[str, Any]],
) -> set[str]:
    """PostgreSQL's insert of many rows as one array per column: the statement's text is
    the same for every batch, so psycopg parses it once and the server prepares it once
    — a ``VALUES`` list of one placeholder per value made psycopg re-scan a text of
    hundreds of placeholders at every commit (a third of the writer's time)."""
    arrays = _column_arrays(in_key_order(rows, key), columns, dict.__getitem__)
    result = connection.exec_driver_sql(_unnest_sql(table, columns, key), tuple(arrays))
    return {row[0] for row in result}


def _sqlite_inserted(
    connection: sa.Connection,
    table: str,
    columns: tuple[str, ...],
    key: str,
    rows: Sequence[dict[str, Any]],
) -> set[str]:
    """SQLite's ``INSERT … ON CONFLICT DO NOTHING``, the keys it inserted — without
    ``RETURNING``, which hands back one row per call into SQLite, each giving up and
    taking back the interpreter lock the event loop is using (a commit of a dozen
    webhooks waited on it two dozen times).

    When as many rows went in as there are distinct keys, every key is new (the usual
    case); otherwise the rows inserted are the last ``rowcount`` ids: this transaction
    holds SQLite's write lock, so their ids are consecutive, ending at ``lastrowid``.
    """
    sql = _sqlite_insert_sql(table, columns, key, len(rows))
    result = connection.exec_driver_sql(sql, tuple(_sqlite_params(columns, rows)))
    count, last = result.rowcount, result.lastrowid
    keys = {row[key] for row in rows}
    if count == len(keys):
        return keys
    if count <= 0:
        return set()
    found = connection.exec_driver_sql(
        f"SELECT {key} FROM {table} WHERE id > ? AND id <= ?", (last - count, last)
    )
    return {row[0] for row in found}


def write_batch(connection: sa.Connection, writes: Sequence[WebhookWrite]) -> list[WriteResult]:
    """Write many webhooks in the caller's transaction; the caller commits."""
    rows = [row for w in writes for row in w.events]
    resuming = {w.journal.correlation_id for w in writes if w.resumes}
    stored = _insert_events(connection, rows, resuming)
    results = _attribute(writes, stored)
    journaled = _insert_journal(connection, writes, results)
    letters = [
        {
            "created_at": w.journal.received_at,
            "correlation_id": w.journal.correlation_id,
            "provider": w.journal.provider,
            "kind": w.dead_letter.kind,
            "error": storable(w.dead_letter.error),
            "body": w.journal.body,
        }
        for w in writes
        if w.dead_letter is not None and w.journal.correlation_id in journaled
    ]
    if letters:
        connection.execute(dead_letters.insert(), letters)
    for w, result in zip(writes, results, strict=True):
        result.journaled = w.journal.correlation_id in journaled
    return results


def fits_one_statement(dialect: str, writes: Sequence[WebhookWrite]) -> bool:
    """These writes can go as :func:`write_batch_at_once`: on PostgreSQL, live webhooks
    written whole (none resumes an interrupted delivery or ends a large one in parts)."""
    return dialect == "postgresql" and not any(
        w.resumes or w.stored_before or w.rows_before for w in writes
    )


#: The journal's columns as the batch statement sends them: the counts are computed there.
_JOURNAL_SENT = tuple(c for c in JOURNAL_COLUMNS if c not in ("events_new", "duplicates"))
_LETTER_COLUMNS = ("created_at", "correlation_id", "provider", "kind", "error", "body")


@lru_cache(maxsize=4)
def _batch_sql(with_events: bool, with_letters: bool) -> str:
    """One statement for a whole batch (PostgreSQL): the events inserted (``e``), then the
    journal rows with each webhook's count of new events and duplicates (``j``), then the
    dead letters of the webhooks journaled (``d``); it answers the ``(key, correlation id)``
    of each event inserted and ``(NULL, correlation id)`` of each journal row.

    Data-modifying ``WITH`` parts all run, in one snapshot, as one atomic statement. A key
    sent twice in the batch is inserted from its first row and skipped at the second, so
    ``RETURNING`` names the webhook that stored it — the attribution
    :func:`_attribute` makes for :func:`write_batch`."""
    journal = ", ".join(_JOURNAL_SENT)
    parts = []
    if with_events:
        parts.append(
            f"e AS (INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"SELECT * FROM unnest({_arrays('events', EVENT_COLUMNS)}) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key, correlation_id), "
            "n AS (SELECT correlation_id, count(*) AS new FROM e GROUP BY correlation_id)"
        )
        counts, source = (
            "coalesce(n.new, 0), u.sent - coalesce(n.new, 0)",
            "LEFT JOIN n USING (correlation_id)",
        )
    else:
        counts, source = "0, u.sent", ""
    parts.append(
        f"j AS (INSERT INTO webhook_journal ({journal}, events_new, duplicates) "
        f"SELECT {', '.join('u.' + c for c in _JOURNAL_SENT)}, {counts} "
        f"FROM unnest({_arrays('webhook_journal', _JOURNAL_SENT)}, %b::int[]) "
        f"AS u({journal}, sent) {source} "
        "ON CONFLICT (correlation_id) DO NOTHING RETURNING correlation_id)"
    )
    if with_letters:
        parts.append(
            f"d AS (INSERT INTO dead_letters ({', '.join(_LETTER_COLUMNS)}) "
            f"SELECT * FROM unnest({_arrays('dead_letters', _LETTER_COLUMNS)}) "
            f"AS l({', '.join(_LETTER_COLUMNS)}) "
            "WHERE l.correlation_id IN (SELECT correlation_id FROM j))"
        )
    answer = "SELECT NULL, correlation_id FROM j"
    if with_events:
        answer = f"SELECT idempotency_key, correlation_id FROM e UNION ALL {answer}"
    return f"WITH {', '.join(parts)} {answer}"


def _arrays(table: str, columns: tuple[str, ...]) -> str:
    types = metadata.tables[table].columns
    return ", ".join(f"%b::{_array_element(types[c].type)}[]" for c in columns)


def _column_arrays(rows: Sequence[Any], columns: tuple[str, ...], get: Any) -> list[list[Any]]:
    """One list per column, every text made :func:`storable`."""
    arrays = []
    for c in columns:
        values = [get(row, c) for row in rows]
        if any(v.__class__ is str and "\x00" in v for v in values):
            values = [storable(v) if v.__class__ is str else v for v in values]
        arrays.append(values)
    return arrays


def write_batch_at_once(
    connection: sa.Connection, writes: Sequence[WebhookWrite]
) -> list[WriteResult]:
    """:func:`write_batch` as one statement (see :func:`fits_one_statement`), atomic by
    itself: the caller may run it in autocommit, and a batch then costs the database one
    round trip instead of one per statement (``BEGIN``, the inserts, ``COMMIT``) — on a
    busy machine each one waits for the database's process to be scheduled. If the
    connection drops on the way, see :func:`committed_before`."""
    rows = [row for w in writes for row in w.events]
    letters = [w for w in writes if w.dead_letter is not None]
    params: list[list[Any]] = []
    if rows:
        params += _column_arrays(
            in_key_order(rows, "idempotency_key"), EVENT_COLUMNS, dict.__getitem__
        )
    params += _column_arrays([w.journal for w in writes], _JOURNAL_SENT, getattr)
    params.append([len(w.events) for w in writes])
    if letters:
        params += _column_arrays(letters, _LETTER_COLUMNS, _letter_value)
    result = connection.exec_driver_sql(_batch_sql(bool(rows), bool(letters)), tuple(params))
    pairs = [(key, owner) for key, owner in result]
    journaled = {correlation_id for key, correlation_id in pairs if key is None}
    return _results(writes, [p for p in pairs if p[0] is not None], journaled)


def _results(
    writes: Sequence[WebhookWrite], stored: Iterable[tuple[str, str]], journaled: set[str]
) -> list[WriteResult]:
    """Each write's result from the ``(key, correlation id)`` of the events that were
    stored for it and the correlation ids journaled."""
    new: dict[str, set[str]] = {}
    for key, correlation_id in stored:
        new.setdefault(correlation_id, set()).add(key)
    return [
        WriteResult(
            new_keys=new.get(w.journal.correlation_id, set()),
            journaled=w.journal.correlation_id in journaled,
        )
        for w in writes
    ]


def committed_before(
    connection: sa.Connection, writes: Sequence[WebhookWrite]
) -> list[WriteResult] | None:
    """What :func:`write_batch_at_once` or :func:`write_batch` did for these writes if the
    database committed them although the connection dropped before the answer came (a
    drop during ``COMMIT``) — None if it did not, or if that cannot be told.

    The write is atomic and live webhooks have fresh correlation ids, so their journal
    rows are all there or none is; their new events are those of their keys stored under
    their correlation ids (plus, for the last part of a large webhook, the keys its
    earlier parts stored). Sending the write again instead would answer each of them
    with its own events as duplicates.

    A batch replayed from the spool (``resumes``) cannot be told: an earlier drain may
    have journaled it before the spool forgot it, so a journal row proves nothing. It is
    sent again, as before: nothing is lost, its events count as duplicates in the
    figures, and nobody waits for its answer (it was acknowledged when spooled)."""
    if any(w.resumes for w in writes):
        return None
    ids = [w.journal.correlation_id for w in writes]
    journaled = set(
        connection.execute(
            sa.select(webhook_journal.c.correlation_id).where(
                webhook_journal.c.correlation_id.in_(ids)
            )
        ).scalars()
    )
    if not journaled:
        return None
    keys = {row["idempotency_key"] for w in writes for row in w.events}
    results = _results(writes, _stored_owners(connection, keys), journaled)
    for write, result in zip(writes, results, strict=True):
        result.new_keys |= write.stored_before
    return results


def part_committed_before(
    connection: sa.Connection, rows: Sequence[dict[str, Any]], earlier: set[str]
) -> set[str] | None:
    """What :func:`write_events` did for one part of a large webhook if the database
    committed it although the connection dropped before the answer came: the part's keys
    newly stored under the webhook's correlation id — None when the part did not commit
    (a key of it is stored by nobody: it is sent again).

    ``earlier``: the keys the webhook's earlier parts stored. A webhook may carry one fact
    twice, in two parts; a key stored under its correlation id by an earlier part proves
    nothing about this one. Only this webhook writes under its correlation id (a replayed
    one's earlier delivery too: those rows are its own, see
    :func:`_stored_by_same_delivery`)."""
    if not rows:
        return None
    owner = rows[0]["correlation_id"]
    keys = {row["idempotency_key"] for row in rows}
    owners = dict(_stored_owners(connection, keys))
    if not keys <= owners.keys():
        return None
    return {key for key, stored_by in owners.items() if stored_by == owner} - earlier


def _letter_value(write: WebhookWrite, column: str) -> Any:
    letter, journal = write.dead_letter, write.journal
    assert letter is not None
    if column == "created_at":
        return journal.received_at
    if column in ("kind", "error"):
        return getattr(letter, column)
    return getattr(journal, column)


def write_events(connection: sa.Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Only event rows (part of one large webhook), in the caller's transaction; the keys
    newly stored. The webhook's journal row comes with its last part (``stored_before``)."""
    return {key for key, _ in _insert_events(connection, rows, set())}


def _insert_events(
    connection: sa.Connection, rows: list[dict[str, Any]], resuming: set[str]
) -> set[tuple[str, str]]:
    """Insert event rows; ``(idempotency_key, correlation_id)`` of each row stored for
    the webhook it belongs to.

    That is the keys inserted now, plus, for the webhooks in ``resuming`` (correlation
    ids of writes marked :attr:`WebhookWrite.resumes`), those an earlier, interrupted
    attempt of the same delivery stored (see :func:`_stored_by_same_delivery`): a large
    webhook is written in parts, and when the database goes away between parts the whole
    webhook is spooled and written again — its earlier parts are its own events, not
    duplicates. A live webhook has a fresh correlation id: nothing to look up.
    """
    if not rows:
        return set()
    inserted = _insert_many_returning(connection, "events", EVENT_COLUMNS, "idempotency_key", rows)
    stored: set[tuple[str, str]] = set()
    for row in rows:  # a key inserted now was inserted from its first row in the batch
        key = row["idempotency_key"]
        if key in inserted:
            inserted.discard(key)
            stored.add((key, row["correlation_id"]))
    if resuming and len(stored) < len(rows):
        inserted_now = {key for key, _ in stored}
        stored |= _stored_by_same_delivery(
            connection,
            {
                (row["idempotency_key"], row["correlation_id"])
                for row in rows
                if row["correlation_id"] in resuming and row["idempotency_key"] not in inserted_now
            },
        )
    return stored


def _stored_by_same_delivery(
    connection: sa.Connection, wanted: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Of ``(key, correlation id)`` pairs whose key was already stored, those an
    unfinished write of the same webhook stored: under that correlation id, with no
    journal row yet (a webhook's journal row comes with its last part). A webhook already
    journaled — a spooled one whose commit went through before its connection dropped —
    finds its rows as duplicates."""
    journaled = sa.exists().where(webhook_journal.c.correlation_id == events.c.correlation_id)
    owners = _stored_owners(connection, {key for key, _ in wanted}, ~journaled)
    return {pair for pair in owners if pair in wanted}


def _stored_owners(
    connection: sa.Connection, keys: Iterable[str], *where: sa.ColumnElement[bool]
) -> Iterator[tuple[str, str]]:
    """``(key, correlation id)`` of the stored events with these keys (and ``where``),
    looked up by the unique index in chunks of 10,000 keys."""
    wanted = list(keys)
    for start in range(0, len(wanted), 10_000):
        query = sa.select(events.c.idempotency_key, events.c.correlation_id).where(
            events.c.idempotency_key.in_(wanted[start : start + 10_000]), *where
        )
        yield from ((key, owner) for key, owner in connection.execute(query))


def _attribute(writes: Sequence[WebhookWrite], stored: set[tuple[str, str]]) -> list[WriteResult]:
    """Give each stored key to the webhook that stored it (see :func:`_insert_events`).

    Two redeliveries of one fact in the same batch insert one row, from the first; the
    later one is a duplicate, exactly as if it had come in the next batch.
    """
    unclaimed = set(stored)
    results = []
    for write in writes:
        mine = set(write.stored_before)
        for row in write.events:
            pair = (row["idempotency_key"], row["correlation_id"])
            if pair in unclaimed:
                unclaimed.discard(pair)
                mine.add(pair[0])
        results.append(WriteResult(new_keys=mine, journaled=False))
    return results


def _insert_journal(
    connection: sa.Connection,
    writes: Sequence[WebhookWrite],
    results: Sequence[WriteResult],
) -> set[str]:
    rows = []
    for w, result in zip(writes, results, strict=True):
        j = w.journal
        rows.append(
            {
                "correlation_id": j.correlation_id,
                "received_at": j.received_at,
                "provider": j.provider,
                "path_event": j.path_event,
                "body": j.body,
                "body_sha256": j.body_sha256,
                "signature_valid": j.signature_valid,
                "body_masked": j.body_masked,
                "outcome": j.outcome,
                "account_id": j.account_id,
                "shopper_id": j.shopper_id,
                "events_new": len(result.new_keys),
                "duplicates": w.rows_before + len(w.events) - len(result.new_keys),
                "ignored": j.ignored,
                "errors": j.errors,
            }
        )
    return _insert_many_returning(
        connection, "webhook_journal", JOURNAL_COLUMNS, "correlation_id", rows
    )


# ------------------------------------------------------------------ flag overrides


def set_flag(connection: sa.Connection, shopper_id: str, name: str, value: str) -> None:
    row = {"shopper_id": shopper_id, "name": name, "value": value, "updated_at": datetime.now(UTC)}
    statement = _insert(connection.dialect.name, flag_overrides).on_conflict_do_update(
        index_elements=["shopper_id", "name"],
        set_={"value": value, "updated_at": row["updated_at"]},
    )
    connection.execute(statement, row)


def unset_flag(connection: sa.Connection, shopper_id: str, name: str) -> bool:
    result = connection.execute(
        flag_overrides.delete().where(
            flag_overrides.c.shopper_id == shopper_id, flag_overrides.c.name == name
        )
    )
    return bool(result.rowcount)


def flag_overrides_map(connection: sa.Connection) -> dict[tuple[str, str], str]:
    rows = connection.execute(
        sa.select(flag_overrides.c.shopper_id, flag_overrides.c.name, flag_overrides.c.value)
    )
    return {(shopper, name): value for shopper, name, value in rows}


def flag_override_rows(connection: sa.Connection) -> list[sa.Row[Any]]:
    return list(
        connection.execute(
            sa.select(flag_overrides).order_by(flag_overrides.c.name, flag_overrides.c.shopper_id)
        )
    )


# ------------------------------------------------------------------ replay


@dataclass(frozen=True, slots=True)
class StoredWebhook:
    """A journaled webhook to run through the pipeline again."""

    correlation_id: str
    provider: str
    body: bytes
    received_at: datetime
    signature_valid: bool
    path_event: str | None
    dead_letter_id: int | None = None


def journal_since(
    connection: sa.Connection, since: datetime, chunk: int = 500, shopper_id: str | None = None
) -> Iterator[StoredWebhook]:
    """Journaled webhooks received at or after ``since``, oldest first, in chunks.

    With ``shopper_id``: that shopper's, and those that name no shopper (a batch spanning
    several shoppers, or whose account nobody owned then) — they may hold its events too.
    """
    j = webhook_journal
    owner = (
        sa.true()
        if shopper_id is None
        else sa.or_(j.c.shopper_id == shopper_id, j.c.shopper_id.is_(None))
    )
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(
                j.c.id,
                j.c.correlation_id,
                j.c.provider,
                j.c.body,
                j.c.received_at,
                j.c.signature_valid,
                j.c.path_event,
            )
            .where(j.c.received_at >= since, j.c.id > last_id, owner)
            .order_by(j.c.id)
            .limit(chunk)
        ).all()
        if not rows:
            return
        for row in rows:
            yield StoredWebhook(
                row.correlation_id,
                row.provider,
                row.body,
                _utc(row.received_at),
                row.signature_valid,
                row.path_event,
            )
        last_id = rows[-1].id


def pending_dead_letters(connection: sa.Connection) -> list[StoredWebhook]:
    """Dead letters not yet replayed, with their journal's receipt details; never a probe's
    (``wacanon rollout check`` removes those)."""
    d, j = dead_letters, webhook_journal
    rows = connection.execute(
        sa.select(
            d.c.id,
            d.c.correlation_id,
            d.c.provider,
            d.c.body,
            j.c.received_at,
            j.c.signature_valid,
            j.c.path_event,
        )
        .join(j, j.c.correlation_id == d.c.correlation_id)
        .where(d.c.replayed_at.is_(None), sa.or_(j.c.shopper_id.is_(None), j.c.shopper_id != PROBE))
        .order_by(d.c.id)
    ).all()
    return [
        StoredWebhook(
            r.correlation_id,
            r.provider,
            r.body,
            _utc(r.received_at),
            r.signature_valid,
            r.path_event,
            dead_letter_id=r.id,
        )
        for r in rows
    ]


def mark_replayed(connection: sa.Connection, dead_letter_ids: Iterable[int]) -> None:
    ids = list(dead_letter_ids)
    if ids:
        connection.execute(
            dead_letters.update()
            .where(dead_letters.c.id.in_(ids))
            .values(replayed_at=datetime.now(UTC))
        )


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def counts(connection: sa.Connection) -> dict[str, int]:
    """Row counts of every table (for tests, `wacanon db status` and operators)."""
    tables = (webhook_journal, events, dead_letters, flag_overrides)
    return {
        t.name: connection.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
        for t in tables
    }

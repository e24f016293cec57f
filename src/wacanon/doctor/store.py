"""The doctor's checks of the configuration and the database: no server needed.

Everything here reads bounded slices — the latest events by primary key, the routing
queue's partial indexes, the journal's last hour by its ``received_at`` index — so it
runs on a large production database in seconds.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from wacanon.config import Settings
from wacanon.doctor.findings import Diagnosis, found, held, skipped
from wacanon.errors import ConfigError
from wacanon.flags import GROUP_ROUTING_ENABLED, ROUTING_ENABLED, FlagSnapshot, ShopperFlags
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Received
from wacanon.ingest.spool import REJECTED_FILE, Spool
from wacanon.store.database import APPLICATION_NAME, known_revisions, schema_state
from wacanon.store.measures import FACT_TYPES, stored_twice, stored_twice_examples
from wacanon.store.repository import flag_overrides_map
from wacanon.store.schema_checks import SchemaFound, create_statements, inspect_schema
from wacanon.store.tables import conversations, dead_letters, events, metadata, webhook_journal

LATEST_EVENTS = 10_000
#: Stored webhooks whose idempotency keys are derived again.
KEYS_SAMPLE = 200
#: Unrouted for longer than this while routing is on: routing is not running.
STUCK_SECONDS = 60
NORMALIZATION_RATE = 0.99
#: pg_stat_statements: a query on wacanon's tables this slow on average (and run at
#: least SLOW_CALLS times) is reported.
SLOW_MS = 100.0
SLOW_CALLS = 5
CONNECTIONS_USED = 0.8
DEAD_LETTERS_READ = 5_000
#: Dead letters older than this are history, not a finding (nothing dismisses them).
DEAD_LETTER_HOURS = 24
TOP_PATHS = 5

_ERROR_PART = re.compile(r"(?:^|; )(?:[\w.]+ )?at (\$[^:\s]*): (.*?)(?=; (?:[\w.]+ )?at \$|$)")
_LIST = re.compile(r"\[(?:…, )*…\]")
_INDEX = re.compile(r"\[\d+\]")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def store_checks(settings: Settings, engine: sa.Engine, env: Mapping[str, str]) -> list[Diagnosis]:
    """Every check of the configuration and the database, in the seed's order."""
    out: list[Diagnosis] = []
    state = schema_state(engine)
    if not state.at_head:
        newer = state.current is not None and state.current not in known_revisions()
        out.append(
            found(
                "schema",
                "migrations at head",
                f"revision {state.current or 'none'}, head {state.head}"
                + (" (a newer wacanon migrated it)" if newer else ""),
                "run the doctor of the wacanon version that migrated it"
                if newer
                else "wacanon db upgrade",
            )
        )
        out.append(skipped("schema", "everything else", "not checked: the schema is not at head"))
        return out
    out.append(held("schema", "migrations at head", f"revision {state.current}"))
    schema = inspect_schema(engine)
    if schema.missing_tables:
        statements = [
            str(sa.schema.CreateTable(metadata.tables[name]).compile(dialect=engine.dialect))
            for name in schema.missing_tables
        ]
        out.append(
            found(
                "schema",
                "tables present",
                f"missing: {', '.join(schema.missing_tables)}",
                "; ".join(" ".join(s.split()) for s in statements),
            )
        )
        return out
    out.append(held("schema", "tables present", f"all {len(schema.tables)}"))
    with engine.connect() as connection:
        snapshot = FlagSnapshot(env=dict(env), overrides=flag_overrides_map(connection))
        try:
            snapshot.explain(None)
        except ConfigError as exc:
            out.append(
                found("schema", "flags readable", f"invalid flag: {exc}", "wacanon flags list")
            )
            return out
        out += _duplicates(connection, engine, settings, schema.unique_key)
        out += _latency(connection, engine, settings, schema)
        out += _normalization(connection)
        out += _conversations(connection, snapshot)
    return out


# ---------------------------------------------------------------------- duplicated events


def _duplicates(
    connection: sa.Connection, engine: sa.Engine, settings: Settings, unique_key: bool
) -> list[Diagnosis]:
    area = "duplicates"
    out = []
    if unique_key:
        out.append(held(area, "unique idempotency_key", "the constraint is present"))
        out.append(held(area, "one row per idempotency_key", "guaranteed by the constraint"))
    else:
        shared = sa.select(events.c.idempotency_key).group_by(events.c.idempotency_key)
        shared = shared.having(sa.func.count() > 1)
        collisions = connection.execute(
            sa.select(sa.func.count()).select_from(shared.subquery())
        ).scalar_one()
        fix = "CREATE UNIQUE INDEX uq_events_idempotency_key ON events (idempotency_key)"
        if collisions:
            fix = "delete all but the first row of each key, then " + fix
        out.append(found(area, "unique idempotency_key", "the constraint is missing", fix))
        result = f"{collisions} key(s) stored more than once"
        if collisions:
            out.append(found(area, "one row per idempotency_key", result, fix))
        else:
            out.append(held(area, "one row per idempotency_key", result))
    twice, checked = stored_twice(connection, latest=LATEST_EVENTS)
    name = "one row per message"
    if twice:
        examples = stored_twice_examples(connection, latest=LATEST_EVENTS)
        listed = ", ".join(f"{p} {a} {m}" for p, a, m in examples)
        out.append(
            found(
                area,
                name,
                f"{twice} message(s) stored twice among the {checked} messages of the latest "
                f"{LATEST_EVENTS} events (e.g. {listed})",
                "two keys for one message: compare the two rows (`wacanon events list --json`) "
                "and their raw bodies (`wacanon normalize --provider P FILE`); a provider "
                "sending one message under two ids is a normalizer bug to report",
            )
        )
    else:
        out.append(
            held(
                area,
                name,
                f"none stored twice among the {checked} messages of the latest {LATEST_EVENTS} "
                "events",
            )
        )
    out.append(_keys_derived_again(connection, settings))
    return out


def _keys_derived_again(connection: sa.Connection, settings: Settings) -> Diagnosis:
    """Do today's normalizers give the latest stored webhooks the keys their events were
    stored under (by the webhook's correlation id)? If not, a redelivery of any of them
    would be stored a second time. Events a webhook held but did not store (an unowned
    account, a shopper in shadow mode) are not among the stored, so they cannot count."""
    name = "idempotency keys derived as when stored"
    j, e = webhook_journal.c, events.c
    rows = connection.execute(
        sa.select(j.correlation_id, j.provider, j.body, j.received_at, j.signature_valid)
        # Webhooks that stored an event of their own: a redelivery's events are stored
        # under the first delivery's correlation id, and would leave nothing to compare.
        .where(j.outcome == "stored", j.events_new > 0)
        .order_by(j.id.desc())
        .limit(KEYS_SAMPLE)
    ).all()
    if not rows:
        return skipped("duplicates", name, "no stored webhook to derive again")
    on = ShopperFlags(
        canonical=True, shadow=False, routing=False, group_routing=False, assignment_policy=""
    )
    pipeline = Pipeline(settings, lambda _: on, Metrics())
    derived: set[str] = set()
    for row in rows:
        received_at = row.received_at
        if received_at.tzinfo is None:
            received_at = received_at.replace(tzinfo=UTC)
        plan = pipeline.plan(
            Received(row.provider, row.body, row.correlation_id, received_at, row.signature_valid)
        )
        derived.update(event.idempotency_key for event in plan.result.events)
    stored: set[str] = set()
    ids = [row.correlation_id for row in rows]
    for start in range(0, len(ids), 500):
        stored.update(
            connection.execute(
                sa.select(e.idempotency_key).where(
                    e.correlation_id.in_(ids[start : start + 500]),
                    ~e.provider_event.startswith("wacanon."),  # routing's own events
                )
            ).scalars()
        )
    if not stored:
        return skipped("duplicates", name, "no event stored by the latest webhooks to compare")
    lost = len(stored - derived)
    measured = (
        f"{len(stored) - lost} of the {len(stored)} events the latest {len(rows)} stored "
        "webhooks stored"
    )
    if lost:
        return found(
            "duplicates",
            name,
            measured + f"; {lost} stored under a key today's normalizers do not derive",
            "the normalizers now derive other keys: a redelivery would be stored twice — run "
            "the wacanon version that stored them, or report it with the raw body",
        )
    return held("duplicates", name, measured + " are derived again")


# ---------------------------------------------------------------------- high latency


def _latency(
    connection: sa.Connection, engine: sa.Engine, settings: Settings, schema: SchemaFound
) -> list[Diagnosis]:
    area = "latency"
    out = []
    missing = schema.missing_index_names
    if missing:
        out.append(
            found(
                area,
                "indexes present",
                f"missing: {', '.join(missing)}",
                "; ".join(create_statements(engine, schema)),
            )
        )
    else:
        out.append(held(area, "indexes present", f"{schema.indexes} named indexes"))
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        out += [_slow_queries(connection), _connections(connection)]
    else:
        out.append(skipped(area, "slow queries (pg_stat_statements)", "SQLite: none to read"))
        out.append(skipped(area, "database connections", "SQLite: no server to connect to"))
    out += spool_checks(settings)
    return out


def refused_connections(error: str) -> list[Diagnosis]:
    """The database refusing a connection for want of slots is a finding of its own."""
    if "too many clients" not in error and "remaining connection slots" not in error:
        return []
    return [
        found(
            "latency",
            "database connections",
            f"the database refuses connections: {error}",
            "each wacanon process may open 15 (pool 5 + overflow 10) and 1 for its writer: "
            "fewer --workers or nodes, a pooler (PgBouncer), or a higher max_connections",
        )
    ]


def spool_checks(settings: Settings) -> list[Diagnosis]:
    """What waits in this machine's spool directory, and what its drain set aside (no
    database needed)."""
    directory = Path(settings.spool_path).resolve()
    if not directory.exists():
        return [held("latency", "spool empty", f"no spool directory {directory} (none needed yet)")]
    out = []
    depth = Spool(directory).depth()
    if depth:
        out.append(
            found(
                "latency",
                "spool empty",
                f"{depth} webhook(s) in {directory} wait for the database",
                "a running `wacanon serve` drains them once the database answers: check "
                "`curl -s http://HOST:PORT/ready` and its log ('database unusable; spooling "
                "webhooks', 'batch write failed')",
            )
        )
    else:
        out.append(held("latency", "spool empty", f"nothing waits in {directory}"))
    rejected = directory / REJECTED_FILE
    if rejected.exists():
        with rejected.open("rb") as handle:
            kept = sum(1 for line in handle if line.strip())
        if kept:
            out.append(
                found(
                    "latency",
                    "nothing set aside by the spool's drain",
                    f"{kept} record(s) in {rejected} the database refused even as dead letters",
                    f"read them (`head {rejected}`), fix what the database refuses, then move "
                    f"the file into {directory} as spool-0.jsonl for a running server to drain",
                )
            )
    return out


def _slow_queries(connection: sa.Connection) -> Diagnosis:
    name = "slow queries (pg_stat_statements)"
    installed = connection.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
    ).first()
    if installed is None:
        return skipped(
            "latency",
            name,
            "not installed (shared_preload_libraries = 'pg_stat_statements', then "
            "CREATE EXTENSION pg_stat_statements)",
        )
    tables = "|".join(re.escape(t.name) for t in metadata.sorted_tables)
    try:
        with connection.begin_nested():
            rows = connection.execute(
                sa.text(
                    "SELECT query, calls, mean_exec_time FROM pg_stat_statements "
                    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND calls >= :calls AND mean_exec_time >= :slow AND query ~* :tables "
                    "ORDER BY mean_exec_time DESC LIMIT 3"
                ),
                {"calls": SLOW_CALLS, "slow": SLOW_MS, "tables": rf"\m({tables})\M"},
            ).all()
    except sa.exc.DBAPIError as exc:  # e.g. the library is not preloaded
        return skipped("latency", name, f"not readable: {str(exc.orig).splitlines()[0]}")
    if not rows:
        return held(
            "latency", name, f"no query on wacanon's tables averages {SLOW_MS:g} ms or more"
        )
    listed = "; ".join(
        f"{row.mean_exec_time:.0f} ms × {row.calls}: {' '.join(row.query.split())[:120]}"
        for row in rows
    )
    return found(
        "latency",
        name,
        listed,
        "EXPLAIN (ANALYZE, BUFFERS) the query; a missing index (above) or a table never "
        "analyzed (ANALYZE events) is the usual cause; the averages are cumulative: after "
        "a fix, SELECT pg_stat_statements_reset() and let traffic run before the next doctor",
    )


def _connections(connection: sa.Connection) -> Diagnosis:
    name = "database connections"
    limit = int(connection.execute(sa.text("SHOW max_connections")).scalar_one())
    used, ours = connection.execute(
        sa.text(
            "SELECT count(*), count(*) FILTER (WHERE application_name = :app) "
            "FROM pg_stat_activity WHERE (backend_type = 'client backend' "
            "OR backend_type IS NULL) AND pid <> pg_backend_pid()"
        ),
        {"app": APPLICATION_NAME},
    ).one()
    measured = f"{used} of max_connections {limit} in use ({ours} wacanon's, this one aside)"
    if used >= CONNECTIONS_USED * limit:
        return found(
            "latency",
            name,
            measured,
            "each wacanon process may open 15 (pool 5 + overflow 10) and 1 for its writer: "
            "fewer --workers or nodes, a pooler (PgBouncer), or a higher max_connections",
        )
    return held("latency", name, measured)


# ---------------------------------------------------------------------- normalization errors


def _fold(message: str) -> str:
    """One cause, whatever value it quotes: values as …, a list of them as […]."""
    return _LIST.sub("[…]", _QUOTED.sub("…", message))[:120]


def error_paths(errors: list[tuple[str, str, str]]) -> list[tuple[str, int]]:
    """The commonest error paths of dead letters ``(provider, kind, error)``: array
    indexes and quoted values folded, so one cause counts once per letter."""
    counts: Counter[str] = Counter()
    for provider, kind, error in errors:
        parts = _ERROR_PART.findall(error)
        if not parts:
            counts[f"{provider} {kind}: {_fold(error)}"] += 1
            continue
        counts.update(
            {f"{provider} {_INDEX.sub('[*]', path)}: {_fold(message)}" for path, message in parts}
        )
    return counts.most_common(TOP_PATHS)


def _normalization(connection: sa.Connection) -> list[Diagnosis]:
    area = "normalization"
    out = []
    d = dead_letters.c
    recent = datetime.now(UTC) - timedelta(hours=DEAD_LETTER_HOURS)
    # A body that is not JSON is its sender's bug: no normalizer change or replay clears
    # it, so it is told apart (wacanon_invalid_json_total), never a finding for 24 h.
    not_json = connection.execute(
        sa.select(sa.func.count()).where(d.kind == "invalid_json", d.created_at >= recent)
    ).scalar_one()
    waiting = sa.and_(d.replayed_at.is_(None), d.kind != "invalid_json")
    pending = connection.execute(
        sa.select(sa.func.count()).where(waiting, d.created_at >= recent)
    ).scalar_one()
    older = connection.execute(
        sa.select(sa.func.count()).where(waiting, d.created_at < recent)
    ).scalar_one()
    before = f"; {older} older, not replayed either" if older else ""
    if not_json:
        bodies = "1 body that is" if not_json == 1 else f"{not_json} bodies that are"
        before += f"; {bodies} not JSON, a sender's bug (kept; wacanon_invalid_json_total)"
    name = f"no dead letter in the last {DEAD_LETTER_HOURS} h"
    if pending:
        rows = connection.execute(
            sa.select(d.provider, d.kind, d.error, d.created_at)
            .where(waiting, d.created_at >= recent)
            .order_by(d.id.desc())
            .limit(DEAD_LETTERS_READ)
        ).all()
        top = error_paths([(r.provider, r.kind, r.error) for r in rows])
        oldest = min(r.created_at for r in rows)
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        since = oldest.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(
            found(
                area,
                name,
                f"{pending} waiting; top error paths: "
                + "; ".join(f"{path} ({n})" for path, n in top)
                + before,
                f"see what the normalizers miss: `wacanon compare --from-journal --since {since}`; "
                "once they understand it: `wacanon replay --dead-letter`",
            )
        )
    else:
        out.append(held(area, name, "none" + before))
    j = webhook_journal.c
    hour = datetime.now(UTC) - timedelta(hours=1)
    total, failing = connection.execute(
        sa.select(sa.func.count(), sa.func.count().filter(j.errors > 0)).where(
            j.received_at >= hour, j.outcome != "invalid_json"
        )
    ).one()
    name = "normalization rate (journal, last hour)"
    if not total:
        out.append(skipped(area, name, "no webhook journaled in the last hour"))
    else:
        rate = (total - failing) / total
        measured = f"{rate:.2%} of {total} webhook(s) normalized whole"
        if rate < NORMALIZATION_RATE:
            out.append(found(area, name, measured, "the dead letters above say which paths fail"))
        else:
            out.append(held(area, name, measured))
    return out


# ---------------------------------------------------------------------- conversations


def _conversations(connection: sa.Connection, snapshot: FlagSnapshot) -> list[Diagnosis]:
    area = "conversations"
    out = []
    e = events.c

    def routing_on(shopper: str | None) -> bool:
        return shopper is not None and bool(snapshot.boolean(ROUTING_ENABLED, shopper).value)

    cutoff = datetime.now(UTC) - timedelta(seconds=STUCK_SECONDS)
    # Whatever the flags: a running server routes (or passes over) every queued event.
    stuck = Counter(
        {
            str(shopper or "(no shopper)"): int(n)
            for shopper, n in connection.execute(
                sa.select(e.shopper_id, sa.func.count())
                .where(e.routed_seq.is_(None), e.received_at < cutoff)
                .group_by(e.shopper_id)
            )
        }
    )
    name = f"events routed within {STUCK_SECONDS} s"
    if stuck:
        out.append(
            found(
                area,
                name,
                f"{sum(stuck.values())} event(s) waiting longer: "
                + ", ".join(f"{s} {n}" for s, n in sorted(stuck.items())),
                "routing runs inside `wacanon serve`: start one (its log says why routing "
                "stopped), or route them now: wacanon conversations rebuild",
            )
        )
    else:
        out.append(held(area, name, "nothing waits for routing"))
    passed = {
        shopper: int(n)
        for shopper, n in connection.execute(
            sa.select(e.shopper_id, sa.func.count()).where(e.routed_seq == 0).group_by(e.shopper_id)
        )
        if routing_on(shopper)
    }
    name = "no event passed over while routing is on"
    if passed:
        out.append(
            found(
                area,
                name,
                ", ".join(f"{s} {n}" for s, n in sorted(passed.items()))
                + " event(s) stored while routing was off, never routed",
                "; ".join(f"wacanon conversations rebuild --shopper {s}" for s in sorted(passed)),
            )
        )
    else:
        out.append(held(area, name, "none"))
    top = connection.execute(sa.select(sa.func.max(e.id))).scalar_one() or 0
    rows = connection.execute(
        sa.select(e.shopper_id, e.chat_type, sa.func.count())
        .where(
            e.id > top - LATEST_EVENTS,
            e.event_type.in_(FACT_TYPES),
            e.routed_seq > 0,
            e.conversation_id.is_(None),
        )
        .group_by(e.shopper_id, e.chat_type)
    ).all()
    orphans: Counter[str] = Counter()
    for shopper, chat_type, n in rows:
        if not routing_on(shopper):
            continue
        if chat_type == "group" and not snapshot.boolean(GROUP_ROUTING_ENABLED, shopper).value:
            continue
        orphans[shopper] += int(n)
    gone = {
        str(shopper): int(n)
        for shopper, n in connection.execute(
            sa.select(e.shopper_id, sa.func.count())
            .select_from(events.outerjoin(conversations, conversations.c.id == e.conversation_id))
            .where(
                e.id > top - LATEST_EVENTS,
                e.conversation_id.is_not(None),
                conversations.c.id.is_(None),
            )
            .group_by(e.shopper_id)
        )
    }
    name = "every event's conversation exists"
    if gone:
        out.append(
            found(
                area,
                name,
                f"{sum(gone.values())} event(s) among the latest {LATEST_EVENTS} name a "
                "conversation that is not there: "
                + ", ".join(f"{s} {n}" for s, n in sorted(gone.items())),
                "; ".join(f"wacanon conversations rebuild --shopper {s}" for s in sorted(gone)),
            )
        )
    else:
        out.append(held(area, name, f"all, among the latest {LATEST_EVENTS} events"))
    name = "every routed message has a conversation"
    if orphans:
        out.append(
            found(
                area,
                name,
                f"{sum(orphans.values())} message(s) among the latest {LATEST_EVENTS} routed "
                "without one: " + ", ".join(f"{s} {n}" for s, n in sorted(orphans.items())),
                "; ".join(f"wacanon conversations rebuild --shopper {s}" for s in sorted(orphans)),
            )
        )
    else:
        out.append(held(area, name, f"all, among the latest {LATEST_EVENTS} events"))
    return out

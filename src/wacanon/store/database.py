"""The engine, durability settings and migrations.

Durability is not negotiable here: a webhook is acknowledged only after its journal row
is committed, so SQLite runs in WAL mode with ``synchronous=FULL`` and PostgreSQL with
``synchronous_commit=on``. Migrations are Alembic's, shipped inside the package; a fresh
SQLite file is created at head by ``wacanon serve`` itself (the newcomer's path), while
any database behind head is refused with the command that fixes it.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from wacanon.errors import DatabaseUnreachable, StoreError
from wacanon.files import loose_mode

WAL_CHECKPOINT_PAGES = 4000
#: How long the writer waits for a lock before it spools the batch (see prepare_writer).
WRITER_LOCK_SECONDS = 5

log = structlog.get_logger("wacanon.store")


#: Each process's connection pool: kept connections, and how many more it may open.
#: ``wacanon doctor`` and the ``wacanon_db_pool_*`` gauges judge saturation against them.
POOL_SIZE = 5
POOL_OVERFLOW = 10
#: How wacanon's connections are named in ``pg_stat_activity``.
APPLICATION_NAME = "wacanon"


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine with the durability settings wacanon relies on."""
    parsed = sa.engine.make_url(url)
    if not url.startswith("sqlite") or parsed.database not in (None, "", ":memory:"):
        kwargs.setdefault("pool_size", POOL_SIZE)  # in-memory SQLite has a pool of one
        kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    if url.startswith("sqlite"):
        _private_sqlite_file(parsed)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": 3,
            "application_name": APPLICATION_NAME,
            "options": "-c synchronous_commit=on",
            # A partition drops packets instead of refusing them: without these, a commit
            # waits for TCP's own timeout (many minutes) instead of failing over to the
            # spool within seconds.
            "tcp_user_timeout": 5000,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
        },
        **kwargs,
    )


def _private_sqlite_file(url: sa.engine.URL) -> None:
    """Create a SQLite file 0600 before SQLite opens it (SQLite gives ``-wal`` and ``-shm``
    the database file's mode), whatever the umask; report an existing one that is open to
    group or others. The database holds raw webhook bodies: personal data."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        problem = loose_mode(path)
        if problem:
            log.warning(f"the database file {problem}")
        return
    except OSError:
        return  # e.g. a missing directory: SQLite reports it when it connects
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def prepare_writer(connection: sa.Connection, lock_seconds: float = WRITER_LOCK_SECONDS) -> None:
    """Settings for the one connection that writes (the group-commit writer's).

    SQLite checkpoints its WAL inside whichever commit crosses the threshold, and that
    commit waits for the copy. The default (1,000 pages) stalls a commit every second or
    so under load; 4,000 pages (a WAL of about 16 MB) stalls four times less often for
    the same total work. A checkpoint from another thread cannot replace it: with a
    writer committing hundreds of times a second it never catches up, and the WAL grows
    without bound.

    Each commit's multi-row inserts keep a statement journal (the pages they change, so
    a statement that fails half-way can be undone alone). It outgrows SQLite's in-memory
    spill threshold at a few webhooks per commit, and SQLite then creates, writes and
    unlinks a temporary file in ``/var/tmp`` at every commit: ``temp_store=MEMORY``
    keeps it in memory (commits of 5 webhooks 1.3 → 0.8 ms, a quarter fewer bytes
    written per webhook; docs/operations.md, "Capacity").

    A write waits for a lock at most ``lock_seconds`` (``writer_lock_timeout_seconds``,
    :data:`WRITER_LOCK_SECONDS` by default; SQLite's
    ``busy_timeout``, 30 s for every other connection; PostgreSQL's ``lock_timeout``):
    a command holding SQLite's write lock, or an operator's ``LOCK TABLE``,
    ``VACUUM FULL`` or migration on PostgreSQL, would otherwise hold every webhook
    until it ends — each answered 503 after 30 s. Past it the batch goes to the spool,
    acknowledged, and drains when the lock is gone. The waits wacanon's own writers cause
    each other (routing's commits on SQLite, the same new key from two servers at once
    on PostgreSQL) last one commit: milliseconds.
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        connection.exec_driver_sql("PRAGMA temp_store=MEMORY")
        connection.exec_driver_sql(f"PRAGMA busy_timeout={_milliseconds(lock_seconds)}")
    else:
        connection.exec_driver_sql(lock_wait_sql(lock_seconds))
    connection.commit()


def bounded_lock_waits(engine: sa.Engine, lock_seconds: float = WRITER_LOCK_SECONDS) -> sa.Engine:
    """``engine``, each of whose connections waits ``lock_seconds`` at most for
    a lock: a command that only looks (``wacanon doctor``, ``rollout check``) says that a
    lock held elsewhere stopped it, instead of hanging for as long as the lock lasts — a
    ``VACUUM FULL`` or a stuck migration, exactly when someone needs the diagnosis."""
    sa.event.listen(engine, "connect", partial(_bound_lock_waits, lock_seconds))
    return engine


def _bound_lock_waits(lock_seconds: float, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor.execute(f"PRAGMA busy_timeout={_milliseconds(lock_seconds)}")
    else:
        cursor.execute(lock_wait_sql(lock_seconds))
        dbapi_connection.commit()
    cursor.close()


def lock_wait_sql(lock_seconds: float = WRITER_LOCK_SECONDS, local: bool = False) -> str:
    """PostgreSQL's statement that bounds lock waits to ``lock_seconds``: for the
    session, or (``local``) for the current transaction only."""
    return f"SET {'LOCAL ' if local else ''}lock_timeout = '{_milliseconds(lock_seconds)}ms'"


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration: the migrations shipped in the package, and the database."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("wacanon.store") / "migrations"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str | None:
    """The newest migration shipped with this version (read from the package once: the
    writer asks on every new connection). It depends on the package, not the database."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> set[str]:
    """Every migration this version ships (a database at another one was migrated by a
    newer wacanon)."""
    script = ScriptDirectory.from_config(alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def upgrade(engine: sa.Engine) -> None:
    """Apply every migration up to head (``wacanon db upgrade``)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None
    head: str | None
    empty: bool

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def problem(self) -> str | None:
        """Why this version cannot use the database (schema not at head), or None."""
        if self.at_head:
            return None
        where = (
            f"the database schema is at {self.current}"
            if self.current
            else "the database has no wacanon schema yet"
        )
        return (
            f"{where}, this version needs {self.head}: run `wacanon db upgrade` "
            "(same --config / WACANON_DATABASE_URL)"
        )


def schema_state(engine: sa.Engine) -> SchemaState:
    """Where the database stands relative to the migrations shipped with this version."""
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            empty = not sa.inspect(connection).get_table_names()
    except sa.exc.OperationalError as exc:
        raise DatabaseUnreachable(f"cannot reach the database: {first_line(exc)}") from exc
    head = head_revision()
    return SchemaState(current=current, head=head, empty=empty)


def schema_problem(connection: sa.Connection) -> str | None:
    """Why this database cannot take writes from this version (schema not at head), or None.

    Checked by the writer on every new connection, so a server that started while the
    database was unreachable never writes into a database it has not checked.
    """
    current = MigrationContext.configure(connection).get_current_revision()
    connection.rollback()
    return SchemaState(current=current, head=head_revision(), empty=False).problem


def ensure_schema(engine: sa.Engine) -> str:
    """Make the database usable or refuse with the command to run; returns what was done."""
    state = schema_state(engine)
    if state.at_head:
        return "schema at head"
    if state.empty and engine.dialect.name == "sqlite":
        upgrade(engine)
        return "created a new SQLite database at head"
    raise StoreError(str(state.problem))


def first_line(exc: BaseException) -> str:
    """A database error in one line: the driver's first line, without SQLAlchemy's
    statement and background link (for logs and for what a command prints)."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__

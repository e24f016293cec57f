"""Shared fixtures: real databases (SQLite files and a real PostgreSQL), never mocks.

PostgreSQL tests use a database of their own on 127.0.0.1:5432 (user postgres, trust
auth). Set ``WACANON_TEST_POSTGRES_URL`` to point elsewhere. Without a reachable server
they skip with the reason — except under CI (``CI`` set), where they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from wacanon.canonical.schema import CanonicalEvent
from wacanon.providers import common
from wacanon.store.database import create_engine, upgrade
from wacanon.store.tables import metadata

ADMIN_URL = os.environ.get(
    "WACANON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True, scope="session")
def strict_event_validation() -> Iterator[None]:
    """Production skips the unknown-key check when building events; tests never do."""
    fast = common._validate_event
    common._validate_event = CanonicalEvent.__pydantic_validator__.validate_python
    yield
    common._validate_event = fast


def _postgres_available() -> str | None:
    try:
        engine = sa.create_engine(ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError as exc:
        return f"PostgreSQL not reachable at {ADMIN_URL}: {str(exc.orig).strip().splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; its URL."""
    problem = _postgres_available()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{problem} (CI is set: PostgreSQL tests must run)")
        pytest.skip(problem)
    name = f"wacanon_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _clean(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes it runs once on a SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'wacanon.db'}"
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        return url
    url: str = request.getfixturevalue("postgres_server")
    _clean(url)
    return url

"""Files that hold webhooks or secrets are the owner's alone (0600, the spool directory
0700) whatever the umask, and a loose existing one is reported, never reused silently."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from wacanon.config import TRIAL_TOKEN_FILE, load
from wacanon.ingest.spool import Spool, SpoolRecord
from wacanon.store.database import create_engine, upgrade


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def record() -> SpoolRecord:
    return SpoolRecord(
        provider="simulated",
        correlation_id="c-1",
        received_at=datetime(2026, 3, 1, tzinfo=UTC),
        signature_valid=True,
        body_b64="e30=",
    )


def test_the_sqlite_file_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    db = tmp_path / "wacanon.db"
    engine = create_engine(f"sqlite:///{db}")
    upgrade(engine)
    with engine.connect() as connection:  # WAL mode: -wal and -shm exist while connected
        connection.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
        assert Path(f"{db}-wal").exists()
        assert Path(f"{db}-shm").exists()
        assert {mode(db), mode(Path(f"{db}-wal")), mode(Path(f"{db}-shm"))} == {0o600}
    engine.dispose()


def test_a_relative_sqlite_path_is_created_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = create_engine("sqlite:///./wacanon.db")
    with engine.connect():
        pass
    engine.dispose()
    assert mode(tmp_path / "wacanon.db") == 0o600


def test_an_in_memory_database_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///:memory:"):
        engine = create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


def test_a_loose_existing_database_file_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "wacanon.db"
    db.touch()
    db.chmod(0o644)
    with capture_logs() as logs:
        create_engine(f"sqlite:///{db}").dispose()
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert str(db) in warning["event"]
    assert "0644" in warning["event"]
    assert mode(db) == 0o644  # reported, not changed behind the operator's back


def test_spool_files_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([record()])
    spool.reject(record(), "test")
    spool.close()  # close the file held open across batches
    assert mode(tmp_path / "spool") == 0o700
    files = {f.name: mode(f) for f in (tmp_path / "spool").iterdir()}
    assert files == {f"spool-{os.getpid()}.jsonl": 0o600, "rejected.jsonl.rejected": 0o600}


def test_a_loose_existing_spool_directory_is_reported(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with capture_logs() as logs:
        spool = Spool(directory)
        spool.append([record()])
        spool.close()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert str(directory) in warnings[0]["event"]
    assert "0755" in warnings[0]["event"]
    assert mode(directory / f"spool-{os.getpid()}.jsonl") == 0o600


def test_the_trial_token_file_is_created_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load(None, env={})
    token = tmp_path / TRIAL_TOKEN_FILE
    assert mode(token) == 0o600
    assert token.read_text().strip() == loaded.settings.providers.simulated.token


def test_a_loose_existing_token_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    token = tmp_path / TRIAL_TOKEN_FILE
    token.write_text("old-token\n")
    token.chmod(0o644)
    with capture_logs() as logs:
        loaded = load(None, env={})
    assert loaded.settings.providers.simulated.token == "old-token"
    # Said once, among the notes `wacanon serve` prints — not a second time as a log line.
    assert sum(TRIAL_TOKEN_FILE in n and "0644" in n for n in loaded.notes) == 1
    assert not any(TRIAL_TOKEN_FILE in str(e["event"]) for e in logs)

"""The connection settings of ``wacanon.store.database``."""

from __future__ import annotations

from pathlib import Path

from wacanon.store.database import WAL_CHECKPOINT_PAGES, create_engine, prepare_writer


def test_the_writer_keeps_statement_journals_in_memory(tmp_path: Path) -> None:
    """Otherwise SQLite creates and unlinks a temporary file at every commit."""
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA temp_store").scalar() == 0  # the default
            prepare_writer(connection)
            assert connection.exec_driver_sql("PRAGMA temp_store").scalar() == 2  # MEMORY
            checkpoint = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            assert checkpoint == WAL_CHECKPOINT_PAGES
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        engine.dispose()

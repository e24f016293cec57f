"""What the host gives the gauges: CPUs, memory, the disk that holds the data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa

from wacanon.config import Settings


class Disk(NamedTuple):
    total: int
    free: int


def cpus() -> int:
    """CPUs this process may run on (its affinity, where the platform says)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def memory_bytes() -> int:
    """The machine's memory (physical pages × page size)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def sqlite_file(database_url: str) -> Path | None:
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def disk_of(settings: Settings) -> Disk:
    """The filesystem holding the SQLite file, else the spool (what fills up first)."""
    target = sqlite_file(settings.database_url) or Path(settings.spool_path)
    probe = target if target.exists() else target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return Disk(usage.total, usage.free)


def sqlite_bytes(database_url: str) -> int:
    """The SQLite file with its write-ahead log and shared-memory index."""
    path = sqlite_file(database_url)
    if path is None:
        return 0
    return sum(
        p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )

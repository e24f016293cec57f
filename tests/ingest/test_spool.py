"""The spool's files between workers: a claimed file kept for a later attempt is never
replaced by another worker's claim (each ``Spool`` here stands for one worker: their
``flock``s exclude each other as two processes' do)."""

from __future__ import annotations

import fcntl
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wacanon.ingest.spool import Spool, SpoolRecord


def record(correlation_id: str) -> SpoolRecord:
    return SpoolRecord("simulated", correlation_id, datetime.now(UTC), True, "e30=")


def drained(directory: Path) -> list[str]:
    """Every record a drain would replay now, each file claimed once."""
    spool = Spool(directory)
    found = [r.correlation_id for _, records in spool.claim() for r in records]
    return sorted(found)


def test_a_kept_claim_is_not_replaced_by_another_workers_claim(tmp_path: Path) -> None:
    """Worker A claims its file, cannot write it (a lock held elsewhere) and keeps it; A
    spools more live webhooks into a new file; while A tries its kept file again, worker
    B claims A's new file. B's claim took the kept file's name and replaced it: the
    records A kept, acknowledged long ago, were gone."""
    directory = tmp_path / "spool"
    a = Spool(directory)
    a.append([record("X1"), record("X2")])
    first = a.claim()
    claimed, records = next(first)
    assert [r.correlation_id for r in records] == ["X1", "X2"]
    first.close()  # the attempt failed: the file is kept as it is
    a.append([record("Y1")])  # a live webhook, spooled meanwhile
    again = a.claim()  # A tries the kept file again, and holds it
    assert next(again)[0] == claimed
    b = Spool(directory)
    b_claims = b.claim()
    taken, b_records = next(b_claims)  # B skips the file A holds, takes A's new one
    assert [r.correlation_id for r in b_records] == ["Y1"]
    b_claims.close()  # B cannot write it either
    again.close()
    assert drained(directory) == ["X1", "X2", "Y1"]
    assert taken != claimed


def test_a_drained_file_leaves_nothing_behind(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory)
    spool.append([record("Z1")])
    claims = spool.claim()
    path, _ = next(claims)
    spool.done(path)
    assert list(claims) == []
    assert Spool(directory).depth() == 0
    assert not list(directory.glob("*.draining"))


def test_an_append_waiting_on_a_drains_lock_lands_in_a_file_that_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker B opens and locks A's closed file to drain it; A appends meanwhile: its open
    (same inode) waits on B's lock. B renames, stores, deletes and lets go — and A's
    append, fsynced and acknowledged, went into the deleted file."""
    directory = tmp_path / "spool"
    a = Spool(directory)
    a.append([record("X1")])
    a.close()  # as A's own claim does before draining
    b = Spool(directory)
    waiting = threading.Event()
    appended = threading.Event()
    rename = Path.rename

    def rename_once_a_waits(self: Path, target: Path) -> Path:
        worker = threading.Thread(target=lambda: (a.append([record("Y1")]), appended.set()))
        worker.start()
        waiting.wait(0.3)  # A has opened the file and waits for B's lock
        return rename(self, target)

    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and threading.current_thread() is not main:
            waiting.set()
        real_flock(fd, operation)

    main = threading.current_thread()
    monkeypatch.setattr(Path, "rename", rename_once_a_waits)
    monkeypatch.setattr(fcntl, "flock", flock)
    claims = b.claim()
    path, records = next(claims)
    monkeypatch.setattr(Path, "rename", rename)
    assert [r.correlation_id for r in records] == ["X1"]
    b.done(path)  # X1 stored
    claims.close()  # B lets go of the lock
    assert appended.wait(5)
    a.close()
    assert drained(directory) == ["Y1"]


def test_files_vanishing_while_listed_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker renamed or deleted a file between the listing and the look: that
    raised in the writer's loop and ended its thread (every webhook then answered 503)."""
    directory = tmp_path / "spool"
    spool = Spool(directory)
    spool.append([record("Z1")])
    spool.close()
    listed = spool._files()
    monkeypatch.setattr(Spool, "_files", lambda self: [directory / "spool-1.jsonl", *listed])
    assert spool.has_records()
    assert spool.depth() == 1
    assert [r.correlation_id for _, records in spool.claim() for r in records] == ["Z1"]

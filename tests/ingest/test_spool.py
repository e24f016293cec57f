"""The spool's files between workers: a claimed file kept for a later attempt is never
replaced by another worker's claim (each ``Spool`` here stands for one worker: their
``flock``s exclude each other as two processes' do)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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

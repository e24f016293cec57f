"""The spool: where verified webhooks wait, durably, while the database is unreachable.

Append-only JSON lines, one webhook each, ``fsync``-ed before the webhook is
acknowledged. Each process appends to its own file, locked while it is open; draining
renames an unlocked file to a ``*.draining`` name of its own under an exclusive
``flock`` so two workers never replay the same file, and deletes it only after every
record is committed (a file the database could not take yet stays, for a later
attempt). A crash mid-drain leaves the ``.draining`` file for the next drain — replaying
it again is harmless because journal rows and events are deduplicated by constraint. A
torn last line (a crash during the append, before the acknowledgement) is skipped: it
was never acknowledged.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import msgspec
import structlog

from wacanon.files import loose_mode

log = structlog.get_logger("wacanon.spool")


#: Where the drain sets aside a record the database refuses even as a dead letter.
REJECTED_FILE = "rejected.jsonl.rejected"


class SpoolRecord(msgspec.Struct):
    """A verified webhook as received: enough to run the whole pipeline again later."""

    provider: str
    correlation_id: str
    received_at: datetime
    signature_valid: bool
    body_b64: str
    path_event: str | None = None
    body_masked: bool = False

    @property
    def body(self) -> bytes:
        return base64.b64decode(self.body_b64)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SpoolRecord)


@dataclass
class Spool:
    directory: Path

    def __post_init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._path = self.directory / f"spool-{os.getpid()}.jsonl"
        self._checked = False
        if self.directory.is_dir():  # at start-up, not only at the first outage
            self._check_mode()

    def _check_mode(self) -> None:
        """Report, once, an existing directory open to group or others."""
        if self._checked:
            return
        self._checked = True
        problem = loose_mode(self.directory)
        if problem:
            log.warning(f"the spool directory {problem}")

    def _ensure_directory(self) -> None:
        """The directory, created 0700 whatever the umask (spooled bodies are personal data)."""
        try:
            self.directory.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            self._check_mode()
        else:
            self.directory.chmod(0o700)
            self._checked = True

    def append(self, records: Sequence[SpoolRecord]) -> None:
        """Append and fsync; raises OSError when the spool cannot be written (→ 503)."""
        if self._file is None:
            self._ensure_directory()
            while True:
                handle = _open_private(self._path)
                # Held while this process appends, so no other worker claims a live file.
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                if _is_at(handle, self._path):
                    break
                # A drain had it locked while we waited, then renamed and deleted it: an
                # append there would be acknowledged, and lost. The path is a new file.
                handle.close()
            self._file = handle
            _fsync_directory(self.directory)
        data = b"".join(_encoder.encode(r) + b"\n" for r in records)
        start = self._file.tell()
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            # A partial write (a full disk) must not glue the next record onto a torn
            # line: cut the file back and start a new one for the next append.
            with contextlib.suppress(OSError):
                self._file.truncate(start)
            self.close()
            raise

    def reject(self, record: SpoolRecord, reason: str) -> None:
        """Set aside a record that cannot be replayed, for a person to look at."""
        log.error(
            "spooled webhook cannot be replayed; set aside",
            reason=reason,
            correlation_id=record.correlation_id,
        )
        self._ensure_directory()
        with _open_private(self.directory / REJECTED_FILE) as handle:
            handle.write(_encoder.encode(record) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def problem(self) -> str | None:
        """Why the spool could not take a webhook now, or None: found at start-up and by
        ``/ready``, not during the outage the spool exists for."""
        try:
            self._ensure_directory()
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self.directory)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return f"spool directory {self.directory} is not writable: {exc}"
        return None

    def depth(self) -> int:
        """Records waiting in every spool file of the directory (another worker may
        rename or delete one while it is counted: it is counted under its new name or
        was stored)."""
        total = 0
        for path in self._files():
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
                total += sum(1 for line in handle if line.strip())
        return total

    def has_records(self) -> bool:
        return any(_size(p) > 0 for p in self._files())

    def _files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted([*self.directory.glob("*.jsonl"), *self.directory.glob("*.draining")])

    def close(self) -> None:
        """Close the file held open across appends (the next append opens it again)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def claim(self) -> Iterator[tuple[Path, list[SpoolRecord]]]:
        """Each spool file's records, under an exclusive lock; delete it with :meth:`done`."""
        self.close()
        for path in self._files():
            claimed = path if path.suffix == ".draining" else _claim_name(path)
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed in finally
            except FileNotFoundError:
                continue  # claimed or drained by another worker since it was listed
            try:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another worker is draining it
                if not _is_at(handle, path):
                    continue  # claimed (and replaced) by another worker since it was opened
                if claimed != path:
                    try:
                        path.rename(claimed)
                    except FileNotFoundError:
                        continue
                yield claimed, list(_read(handle, claimed))
            finally:
                handle.close()

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _fsync_directory(self.directory)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed or deleted by another worker since it was listed
        return 0


def _is_at(handle: IO[bytes], path: Path) -> bool:
    """The file ``handle`` has open is still the one at ``path``."""
    try:
        at = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (held.st_dev, held.st_ino) == (at.st_dev, at.st_ino)


def _claim_name(path: Path) -> Path:
    """A ``.draining`` name no other file has: a file claimed earlier may still be there,
    kept for a later attempt and not locked between attempts (``spool-7.jsonl`` claimed
    once, then written again by its worker, would replace it — and lose it — if claimed
    under the same name)."""
    return path.with_name(f"{path.stem}.{os.getpid()}-{time.time_ns()}.draining")


def _read(handle: IO[bytes], path: Path) -> Iterator[SpoolRecord]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            yield _decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("skipping a torn spool line", file=str(path), line=number)


def _open_private(path: Path) -> IO[bytes]:
    """Open for appending, creating the file 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

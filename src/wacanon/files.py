"""Files that hold personal data or secrets (the database, the spool, the trial token):
how an existing one that others can read is reported."""

from __future__ import annotations

import stat
from pathlib import Path


def loose_mode(path: Path) -> str | None:
    """A warning when an existing file or directory is open to group or others, else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    wanted = 0o700 if path.is_dir() else 0o600
    return f"{path} is accessible by group/others (mode {mode:04o}); run `chmod {wanted:o} {path}`"

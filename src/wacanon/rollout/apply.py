"""Writing a rollout step: the one place the step's flag values become overrides.

`wacanon rollout apply`, the rollback drill and the tests all move flags this way, so
what they store is exactly what :func:`wacanon.rollout.phases.changes_to` computed.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from wacanon.flags import GLOBAL, FlagSnapshot
from wacanon.rollout.phases import Change, Step, changes_to
from wacanon.store.repository import flag_overrides_map, set_flag, unset_flag


def apply_step(connection: sa.Connection, step: Step, env: Mapping[str, str]) -> list[Change]:
    """Store the overrides that bring the flags to ``step`` (given the server's
    environment ``env``) in the caller's transaction; the changes made, in plan order."""
    snapshot = FlagSnapshot(env=dict(env), overrides=flag_overrides_map(connection))
    changes = changes_to(step, snapshot)
    for change in changes:
        if change.store is None:
            unset_flag(connection, GLOBAL, change.name)
        else:
            set_flag(connection, GLOBAL, change.name, change.store)
    return changes

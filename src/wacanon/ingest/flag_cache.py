"""The flags a running server obeys: environment plus database overrides, kept fresh.

``wacanon flags set`` writes an override row; every server re-reads the overrides every
``flag_refresh_seconds`` (2 s by default, at most 5 s), so a rollback takes seconds and
needs no restart. A failed refresh keeps the last good snapshot — the database being
briefly away must not flip flags back to their defaults.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

import sqlalchemy as sa
import structlog

from wacanon.flags import FlagSnapshot, ShopperFlags
from wacanon.store.database import WRITER_LOCK_SECONDS, lock_wait_sql
from wacanon.store.repository import flag_overrides_map

if TYPE_CHECKING:
    from wacanon.config import Settings

log = structlog.get_logger("wacanon.flags")


class FlagCache:
    """``announce``: log each change of the overrides at INFO — by each serving process
    (the writer process's own cache follows silently), and not for the first read at
    start-up (the start-up lines list the overrides)."""

    def __init__(
        self,
        engine: sa.Engine,
        env: Mapping[str, str],
        refresh_seconds: float,
        *,
        announce: bool = True,
        lock_seconds: float = WRITER_LOCK_SECONDS,
    ) -> None:
        self._engine = engine
        self._lock_seconds = lock_seconds
        self._announce = announce
        self._read_once = False
        self._env = dict(env)
        self._refresh_seconds = refresh_seconds
        # One reference to (snapshot, memo): a refresh swaps both at once, so a lookup can
        # never file a value computed from the old snapshot into the new memo.
        self._state: tuple[FlagSnapshot, dict[str | None, ShopperFlags]] = (
            FlagSnapshot(env=self._env, overrides={}),
            {},
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wacanon-flags", daemon=True)

    @classmethod
    def for_settings(
        cls, engine: sa.Engine, env: Mapping[str, str], settings: Settings, *, announce: bool = True
    ) -> FlagCache:
        """The cache a command or server reads flags with: its configured refresh period and
        lock wait (``writer_lock_timeout_seconds``)."""
        return cls(
            engine,
            env,
            settings.flag_refresh_seconds,
            announce=announce,
            lock_seconds=settings.writer_lock_timeout_seconds,
        )

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def snapshot(self) -> FlagSnapshot:
        return self._state[0]

    def for_shopper(self, shopper_id: str | None) -> ShopperFlags:
        """Resolved flags of one shopper, memoized until the next refresh changes something."""
        snapshot, memo = self._state
        cached = memo.get(shopper_id)
        if cached is None:
            cached = ShopperFlags.resolve(snapshot, shopper_id)
            memo[shopper_id] = cached
        return cached

    def refresh(self) -> None:
        """Read the overrides again. On PostgreSQL the read waits for a lock at most
        ``lock_seconds`` (a ``LOCK TABLE`` or migration holding the table): the
        writer refreshes the flags on each new connection, and must get on to spooling."""
        try:
            with self._engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(lock_wait_sql(self._lock_seconds, local=True))
                overrides = flag_overrides_map(connection)
        except sa.exc.DBAPIError as exc:
            log.warning("flag refresh failed; keeping the last values", error=str(exc.orig))
            return
        if overrides != self._state[0].overrides:
            if self._announce and self._read_once:
                log.info("flag overrides changed", overrides=len(overrides))
            self._state = (FlagSnapshot(env=self._env, overrides=overrides), {})
        self._read_once = True

    def _run(self) -> None:
        while not self._stop.wait(self._refresh_seconds):
            self.refresh()

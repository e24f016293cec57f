"""``wacanon rollout check``: every machine-checkable item of a seed phase, measured.

Each item is checked against what is really there — the flags as this shell and the
stored overrides resolve them, the database's schema, the legacy handler answering, and
probe webhooks (:mod:`wacanon.probe`) sent through the live endpoint — and reported with
the value measured, so a ✗ says what was found, not only that something is wrong. What
the server measures over a window (normalization rate, error rate, p95) comes from its
``/metrics/window``, probes included, so an idle server is judged on the probes.

The probe's rows (journal, events, conversations, its SKM) are deleted afterwards,
whatever happened.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from wacanon.config import LoadedConfig, SkmConfig
from wacanon.errors import ConfigError, CouldNotCheck, StoreError
from wacanon.flags import COMPARATIVE_LOGS, FlagSnapshot
from wacanon.ingest.flag_cache import FlagCache
from wacanon.ingest.projector import Router
from wacanon.ingest.window import Counts, summarize
from wacanon.probe import PROBE, PROBE_PROVIDER
from wacanon.rollout import phases
from wacanon.store.database import schema_state
from wacanon.store.measures import stored_twice
from wacanon.store.repository import flag_overrides_map
from wacanon.store.rollout import purge_probe
from wacanon.store.schema_checks import inspect_schema
from wacanon.store.tables import conversations, events

#: p95 bound of each phase (the seed: none in development, 100 ms staging, 200 ms prod).
P95_BOUND_MS: dict[int, float | None] = {0: None, 1: 100.0, 2: 200.0, 3: 200.0}
NORMALIZATION_RATE = 0.99
ERROR_RATE = 0.001
PROBE_SKM = "wacanon-probe-skm"
PROBE_CUSTOMER = "5500000000001"
ROUTED_WITHIN_SECONDS = 15.0
#: /metrics/window is asked at most this often, and no more once this many answers in a
#: row came from workers already heard: with two workers, one missed after 12 answers
#: is a chance of 1 in 4,096.
WINDOW_ASKS = 40
WINDOW_SAME_ANSWERS = 12

OK, FAIL, SKIP = "ok", "fail", "skip"


def require_health(client: httpx.Client, url: str) -> None:
    """The server at ``url`` answers ``/health`` with 200, or :class:`CouldNotCheck`."""
    try:
        answer = client.get("/health")
    except httpx.HTTPError as exc:
        raise CouldNotCheck(f"server {url} unreachable: {exc}") from None
    if answer.status_code != 200:
        raise CouldNotCheck(f"server {url} answered /health with {answer.status_code}")


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    status: str
    measured: str
    required: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "status": self.status,
            "measured": self.measured,
            "required": self.required,
        }


@dataclass
class Check:
    """One run of the checklist of ``phase`` against ``url``'s server and the configured
    database."""

    phase: int
    loaded: LoadedConfig
    engine: sa.Engine
    url: str
    window_seconds: float
    token: str | None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    progress: Callable[[str], None] = lambda _: None
    routed_within: float = ROUTED_WITHIN_SECONDS
    items: list[Item] = field(default_factory=list)

    @property
    def stores(self) -> bool:
        return self.phase >= 2

    def run(self) -> list[Item]:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            require_health(client, self.url)
            if not self._schema():
                return self.items  # nothing else can be read from a schema not at head
            self._flags()
            self._legacy(client)
            try:
                self._probes(client)
            finally:
                with self.engine.begin() as connection:
                    purge_probe(connection)
            self._window(client)
            self._facts()
        return self.items

    def _add(self, name: str, ok: bool | None, measured: str, required: str = "") -> None:
        status = SKIP if ok is None else OK if ok else FAIL
        self.items.append(Item(name, status, measured, required))

    # ------------------------------------------------------------------ configuration

    def _flags(self) -> None:
        with self.engine.connect() as connection:
            snapshot = FlagSnapshot(env=self.env, overrides=flag_overrides_map(connection))
        try:
            at = phases.matching(phases.current(snapshot))
        except ConfigError as exc:
            self._add("flags", False, f"invalid flag: {exc}")
            return
        if at is None:
            measured = "the global flags match no step (`wacanon rollout plan`)"
        else:
            allow = f" for {', '.join(sorted(at.allow))}" if at.allow else ""
            measured = f"at Phase {at.label}{allow}"
        self._add(
            f"flags as Phase {self.phase} sets them",
            at is not None and at.phase == self.phase,
            measured,
            f"`wacanon rollout apply --phase {self.phase}`",
        )
        if self.phase == 1:
            logs = snapshot.boolean(COMPARATIVE_LOGS, None).value
            self._add("comparative logs enabled", bool(logs), f"{COMPARATIVE_LOGS}={logs}")

    def _schema(self) -> bool:
        """Migrations, tables and indexes; whether the schema is at head."""
        try:
            state = schema_state(self.engine)
        except StoreError as exc:
            raise CouldNotCheck(str(exc)) from None
        self._add(
            "migrations at head",
            state.at_head,
            f"revision {state.current or 'none'}",
            f"{state.head} (`wacanon db upgrade`)",
        )
        if not state.at_head:
            self._add("everything else", None, "not checked: the schema is not at head")
            return False
        found = inspect_schema(self.engine)
        self._add(
            "tables present",
            not found.missing_tables,
            f"missing: {', '.join(found.missing_tables)}"
            if found.missing_tables
            else f"all {len(found.tables)}",
        )
        missing = found.missing_index_names
        self._add(
            "indexes present",
            not missing,
            f"{found.indexes} named indexes and the unique idempotency_key"
            if not missing
            else f"missing: {', '.join(missing)}",
        )
        return True

    def _legacy(self, client: httpx.Client) -> None:
        settings = self.loaded.settings
        targets = sorted(
            {u for u in settings.legacy.model_dump().values() if u}
            | {a.legacy_url for a in settings.accounts if a.legacy_url}
        )
        if not targets:
            self._add("legacy handler answering", None, "– no [legacy] configured")
            return
        answers = []
        ok = True
        for target in targets:
            started = time.perf_counter()
            try:
                status = httpx.head(target, timeout=settings.legacy_timeout_seconds).status_code
                answers.append(f"{target} {status} in {_ms(started)}")
            except httpx.HTTPError as exc:
                ok = False
                answers.append(f"{target} did not answer ({type(exc).__name__})")
        self._add("legacy handler answering", ok, "; ".join(answers))

    # ------------------------------------------------------------------ probes

    def _probes(self, client: httpx.Client) -> None:
        if self.token is None:
            raise CouldNotCheck(
                "probes need the simulated provider's token: set [providers.simulated] "
                "token (probes use the reserved account wacanon-probe)"
            )
        if self.stores:
            self._probe_skm()
        message_id = f"wacanon-probe-{uuid.uuid4().hex}"
        body = orjson.dumps(
            {
                "account": PROBE,
                "events": [
                    {
                        "type": "message",
                        "id": message_id,
                        "from": PROBE_CUSTOMER,
                        "text": "wacanon rollout check probe",
                        "timestamp": int(time.time()),
                    }
                ],
            }
        )
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        self.progress("sending the probe twice")
        replies = []
        for _ in range(2):
            answer = client.post(f"/webhooks/{PROBE_PROVIDER}", content=body, headers=headers)
            if answer.status_code != 200:
                self._add(
                    "probe webhooks accepted",
                    False,
                    f"answered {answer.status_code}: {answer.text[:200]}",
                )
                return
            replies.append(answer.json())
        self._add("probe webhooks accepted", True, "2 of 2 answered 200")
        keys = [tuple(r.get("idempotency_keys", [])) for r in replies]
        stored = self._probe_rows()
        if not self.stores:
            self._add(
                "shadow mode: nothing written",
                stored == 0 and all(r.get("shadow") for r in replies),
                f"{stored} event row(s) for 2 probes"
                + ("" if all(r.get("shadow") for r in replies) else "; not answered as shadow"),
                "0 rows",
            )
            self._add(
                "idempotency: the same probe twice gives one key",
                len(set(keys)) == 1 and len(keys[0]) == 1,
                f"{len({k for ks in keys for k in ks})} key(s) in the 2 replies",
                "1 key",
            )
        else:
            self._add(
                "idempotency: the same probe twice gives one row",
                stored == 1 and replies[1].get("duplicates") == 1,
                f"{stored} row(s); the second reply: duplicates={replies[1].get('duplicates')}",
                "1 row, duplicates=1",
            )
        signals = [int(r.get("signals", 0)) for r in replies]
        events_new = int(replies[0].get("events", 0))
        expected = [events_new, 0] if self.stores else [0, 0]
        self._add(
            "signals: " + ("one per stored event" if self.stores else "none in shadow mode"),
            signals == expected,
            f"{signals[0]} for the first probe, {signals[1]} for its redelivery",
            f"{expected[0]}, {expected[1]}",
        )
        if self.stores and stored:
            self._probe_routed()
        elif self.stores:
            for name in ("conversation created for the probe", "SKM assigned to it"):
                self._add(name, False, "the probe was not stored")

    def _probe_skm(self) -> None:
        router = Router(self.engine, self.loaded.settings, self._flags_for())
        router.add_skm(
            SkmConfig(
                id=PROBE_SKM,
                shopper_id=PROBE,
                name="wacanon rollout check",
                wa_ids=["5500000000009"],
                capacity=10,
            )
        )

    def _flags_for(self) -> Any:
        flags = FlagCache.for_settings(self.engine, self.env, self.loaded.settings)
        flags.refresh()
        return flags.for_shopper

    def _probe_rows(self) -> int:
        query = sa.select(sa.func.count()).where(
            events.c.shopper_id == PROBE, ~events.c.provider_event.startswith("wacanon.")
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def _probe_routed(self) -> None:
        self.progress("waiting for the probe's conversation and its SKM")
        started = time.perf_counter()
        deadline = time.monotonic() + self.routed_within
        row = None
        while time.monotonic() < deadline:
            with self.engine.connect() as connection:
                row = connection.execute(
                    sa.select(conversations.c.id, conversations.c.skm_id).where(
                        conversations.c.shopper_id == PROBE
                    )
                ).first()
            if row is not None and row.skm_id is not None:
                break
            time.sleep(0.1)
        self._add(
            "conversation created for the probe",
            row is not None,
            f"in {_ms(started)}" if row is not None else f"none after {self.routed_within:g} s",
        )
        assigned = row is not None and row.skm_id == PROBE_SKM
        self._add(
            "SKM assigned to it",
            assigned,
            f"{row.skm_id} in {_ms(started)}" if assigned and row else "not assigned",
            PROBE_SKM,
        )

    # ------------------------------------------------------------------ measured

    def _window(self, client: httpx.Client) -> None:
        windows: dict[str, dict[str, Any]] = {}
        unchanged = 0
        # A new connection each time: a server of several workers answers from whichever
        # took it. Asked until no new worker answered for a while, their windows added up.
        for _ in range(WINDOW_ASKS):
            answer = client.get(
                "/metrics/window",
                params={"seconds": self.window_seconds},
                headers={"Connection": "close"},
            )
            if answer.status_code != 200:
                self._add("server metrics", False, f"/metrics/window answered {answer.status_code}")
                return
            found = answer.json()
            node = str(found.get("node", ""))
            unchanged = unchanged + 1 if node in windows else 0
            windows[node] = found
            if "counts" not in found or unchanged >= WINDOW_SAME_ANSWERS:
                break
        if all("counts" in found for found in windows.values()):
            total = Counts()
            for found in windows.values():
                total.add(Counts.of(found["counts"]))
            probed = sum(int(found.get("probed", 0)) for found in windows.values())
            w = summarize(total, self.window_seconds, probed)
        else:  # a server from before workers were added up: its one answer
            w = next(iter(windows.values()))
        workers = f", {len(windows)} worker processes" if len(windows) > 1 else ""
        span = f"over {_span(self.window_seconds)}, {w['webhooks']} webhook(s){workers}"
        rate = w["normalization_rate"]
        self._add(
            "normalization rate",
            rate is not None and rate > NORMALIZATION_RATE,
            f"{_percent(rate)} {span}",
            f"> {NORMALIZATION_RATE:.0%}",
        )
        errors = w["error_rate"]
        self._add(
            "error rate",
            errors is not None and errors < ERROR_RATE,
            f"{_percent(errors)} ({w['server_errors']} answered 5xx, "
            f"{w['normalization_failures']} not understood) {span}",
            f"< {ERROR_RATE:.1%}",
        )
        p95 = w["latency_ms"]["p95"]
        bound = P95_BOUND_MS[self.phase]
        self._add(
            "p95 latency",
            p95 is not None and (bound is None or p95 < bound),
            f"{p95:g} ms {span}" if p95 is not None else f"no webhook {span}",
            f"< {bound:g} ms" if bound is not None else "no bound in Phase 0",
        )

    def _facts(self) -> None:
        since = datetime.now(UTC) - timedelta(seconds=self.window_seconds)
        with self.engine.connect() as connection:
            doubled, checked = stored_twice(connection, since=since)
        self._add(
            "no two rows for one fact",
            doubled == 0,
            f"{doubled} message(s) stored twice among {checked} over {_span(self.window_seconds)}",
            "0",
        )


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.0f} ms"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def parse_window(text: str) -> float:
    """``15m``, ``900s``, ``1h`` or seconds; at most an hour (what the server keeps)."""
    units = {"s": 1, "m": 60, "h": 3600}
    raw = text.strip().lower()
    factor = units.get(raw[-1:])
    number = raw[:-1] if factor else raw
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise ConfigError(f"--window: expected e.g. 15m, 900s or 1h, got {text!r}") from None
    if not 0 < seconds <= 3600:
        raise ConfigError(f"--window: expected more than 0 and at most 1h, got {text!r}")
    return seconds

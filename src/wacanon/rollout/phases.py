"""The seed checklist's phases as flag settings, and which step a set of flags is at.

The seed (``rollout-checklist.pt-BR.md``) rolls out in four phases: 0 development in
shadow, 1 staging with comparative logs, 2 a beta for an allowlist of shoppers, 3 every
shopper, gradually (10 → 25 → 50 → 75 → 100 %). Each step is a complete assignment of the
*global* raw settings this module manages — every switch and every narrowing of it — so
that applying a step always lands on exactly that step, whatever came before, and so that
the current flags can be matched back to a step.

The narrowing follows :mod:`wacanon.flags`: a flag turned on for a few shoppers is its
switch ``true`` with an ``_ALLOWLIST``; a flag turned *off* for a few (shadow mode, whose
rollout is switching it off) is its switch ``true`` with a ``_DENYLIST``; a percentage
is ``_PERCENT``, which for shadow mode counts from the other end, so the same shoppers
leave shadow, get routing and get group routing first. Phase 3 keeps the beta's
shoppers on while the percentage grows; at 100 % no narrowing is left (the seed's
"remove the allowlist").

Pure: callers hand it the raw values (environment plus stored overrides).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from wacanon.errors import ConfigError
from wacanon.flags import (
    CANONICAL_EVENTS_ENABLED,
    CANONICAL_SHADOW_MODE,
    COMPARATIVE_LOGS,
    GROUP_ROUTING_ENABLED,
    NARROWING_SUFFIXES,
    ROLLED_OUT_BY_TURNING_OFF,
    ROUTING_ENABLED,
    FlagSnapshot,
    parse_list,
    validate,
)

#: The switches a phase sets, in the seed's order.
SWITCHES = (
    CANONICAL_EVENTS_ENABLED,
    CANONICAL_SHADOW_MODE,
    ROUTING_ENABLED,
    GROUP_ROUTING_ENABLED,
    COMPARATIVE_LOGS,
)
#: Every raw global setting a step decides: the switches and each one's narrowing.
MANAGED = (*SWITCHES, *(f + suffix for f in SWITCHES for suffix in NARROWING_SUFFIXES))
#: The flags Phase 3 moves by percentage (what separates production from staging).
GRADUAL = (CANONICAL_SHADOW_MODE, ROUTING_ENABLED, GROUP_ROUTING_ENABLED)
#: The seed's days of Phase 3.
PERCENTS = (10.0, 25.0, 50.0, 75.0, 100.0)

_PHASE_VALUES: dict[int, dict[str, bool]] = {
    0: {
        CANONICAL_EVENTS_ENABLED: True,
        CANONICAL_SHADOW_MODE: True,
        ROUTING_ENABLED: False,
        GROUP_ROUTING_ENABLED: False,
        COMPARATIVE_LOGS: False,
    },
    1: {
        CANONICAL_EVENTS_ENABLED: True,
        CANONICAL_SHADOW_MODE: True,
        ROUTING_ENABLED: False,
        GROUP_ROUTING_ENABLED: False,
        COMPARATIVE_LOGS: True,
    },
    2: {
        CANONICAL_EVENTS_ENABLED: True,
        CANONICAL_SHADOW_MODE: False,
        ROUTING_ENABLED: True,
        GROUP_ROUTING_ENABLED: True,
        COMPARATIVE_LOGS: False,
    },
}
_PHASE_VALUES[3] = dict(_PHASE_VALUES[2])

TITLES = {
    0: "development: shadow mode, nothing stored",
    1: "staging: shadow mode with comparative logs",
    2: "production beta: an allowlist of shoppers stored and routed",
    3: "production: every shopper, gradually",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the plan: a phase, and in Phase 3 the share of shoppers."""

    phase: int
    percent: float | None = None
    allow: frozenset[str] = field(default_factory=frozenset)

    @property
    def label(self) -> str:
        return f"{self.phase}" if self.percent is None else f"{self.phase} @ {self.percent:g} %"

    @property
    def values(self) -> dict[str, bool]:
        """The seed's switch values of the phase (what every shopper gets at 100 %)."""
        return dict(_PHASE_VALUES[self.phase])

    def settings(self) -> dict[str, str | None]:
        """Every managed raw setting, ``None`` where nothing narrows."""
        out: dict[str, str | None] = dict.fromkeys(MANAGED)
        for name, on in self.values.items():
            out[name] = _word(on)
        allow = ",".join(sorted(self.allow)) or None
        if self.phase in (1, 2) and allow:
            previous = _PHASE_VALUES[self.phase - 1]
            for name, on in self.values.items():
                if on != previous[name]:  # narrowed to the allowed shoppers
                    out[name] = "true"
                    out[name + ("_ALLOWLIST" if on else "_DENYLIST")] = allow
        if self.phase == 3 and self.percent is not None and self.percent < 100:
            for name in GRADUAL:
                out[name] = "true"
                if name in ROLLED_OUT_BY_TURNING_OFF:  # kept in shadow: the rest
                    out[name + "_PERCENT"] = f"{100 - self.percent:g}"
                    out[name + "_DENYLIST"] = allow
                else:
                    out[name + "_PERCENT"] = f"{self.percent:g}"
                    out[name + "_ALLOWLIST"] = allow
        return out

    def lines(self) -> list[str]:
        """Each switch with its narrowing on one line, and what it means when narrowed."""
        settings = self.settings()
        out = []
        for name, target in self.values.items():
            raw = [f"{n}={settings[n]}" for n in (name, *_narrowing(name)) if settings[n]]
            who = []
            listed = settings[name + "_ALLOWLIST"] or settings[name + "_DENYLIST"]
            if listed:
                who.append(listed)
            if settings[name + "_PERCENT"] is not None and self.percent is not None:
                who.append(f"{self.percent:g} % of the shoppers")
            meaning = ""
            if who:
                meaning = (
                    f"   # {_word(target)} for {' and '.join(who)}, "
                    f"{_word(not target)} for the others"
                )
            out.append("  ".join(raw) + meaning)
        return out


def _narrowing(name: str) -> list[str]:
    return [name + suffix for suffix in ("_ALLOWLIST", "_DENYLIST", "_PERCENT")]


def plan() -> list[Step]:
    """The steps in the seed's order (the allowlist left empty)."""
    return [Step(0), Step(1), Step(2), *(Step(3, p) for p in PERCENTS)]


def step_for(phase: int, percent: float | None, allow: Iterable[str]) -> Step:
    """The step ``rollout apply`` sets, refusing what the seed has no step for."""
    allowed = frozenset(allow)
    if phase not in _PHASE_VALUES:
        raise ConfigError(f"--phase: expected 0, 1, 2 or 3, got {phase}")
    if phase != 3 and percent is not None:
        raise ConfigError("--percent belongs to Phase 3 (the gradual rollout)")
    if phase == 3:
        if percent is None:
            raise ConfigError("Phase 3 needs --percent (the seed's days: 10, 25, 50, 75, 100)")
        if not 0 < percent <= 100:
            raise ConfigError(f"--percent: expected more than 0 and at most 100, got {percent:g}")
        if percent == 100 and allowed:
            raise ConfigError("at 100 % every shopper is on: --allow has nothing to narrow")
    if phase == 0 and allowed:
        raise ConfigError("Phase 0 is the starting point: --allow has nothing to narrow")
    if phase == 2 and not allowed:
        raise ConfigError(
            "Phase 2 is a beta for an allowlist: name its shoppers with --allow SHOPPER "
            "(every shopper at once is `--phase 3 --percent 100`)"
        )
    return Step(phase, percent, allowed)


def normalized(name: str, value: str | None) -> str | None:
    """A raw value as a step would write it; ``None`` for one that narrows nothing."""
    if value is None or value.strip() == "":
        return None
    text = validate(name, value)
    if name.endswith("_PERCENT") and float(text) >= 100:
        return None  # 100 % narrows nothing, for either direction
    if name.endswith(("_ALLOWLIST", "_DENYLIST")) and not text:
        return None
    return text


def current(snapshot: FlagSnapshot) -> dict[str, str | None]:
    """The global raw value of every managed setting now (defaults filled in)."""
    out: dict[str, str | None] = {}
    for name in MANAGED:
        found = snapshot.raw(name, None)
        out[name] = normalized(name, found[0] if found else None)
    for name in SWITCHES:
        if out[name] is None:
            out[name] = _word(_PHASE_VALUES[0][name])
    return out


def allowed(settings: Mapping[str, str | None]) -> frozenset[str]:
    """The shoppers the settings narrow a flag to (a beta's allowlist), if any."""
    return frozenset(
        shopper
        for name in MANAGED
        if name.endswith(("_ALLOWLIST", "_DENYLIST"))
        for shopper in parse_list(settings.get(name) or "")
    )


def matching(settings: Mapping[str, str | None]) -> Step | None:
    """The step these global settings are exactly at, if any (its allowlist read back)."""
    allow = allowed(settings)
    for step in plan():
        if step.phase == 2 and not allow:
            continue  # a beta without its allowlist is Phase 3 at 100 %
        candidate = Step(step.phase, step.percent, allow if step.phase != 0 else frozenset())
        if candidate.settings() == dict(settings):
            return candidate
    return None


def phase_of(values: Mapping[str, bool]) -> int | None:
    """The phase whose switch values one shopper's effective flags are (2 stands for the
    production phases, 2 and 3, which differ only in who gets them); None for none."""
    for phase in (0, 1, 2):
        if all(values.get(name) == on for name, on in _PHASE_VALUES[phase].items()):
            return phase
    return None


@dataclass(frozen=True, slots=True)
class Change:
    """One global setting a step changes: its value before and after, and what to store
    (``store`` ``None``: remove the global override; the environment has nothing to undo)."""

    name: str
    before: str | None
    after: str | None
    store: str | None


def changes_to(step: Step, snapshot: FlagSnapshot) -> list[Change]:
    """The global overrides to write so that the global settings are exactly ``step``'s.

    An override beats the environment, so a narrowing the environment sets is undone by
    an override that narrows nothing (an empty list, 100 %), not by removing ours.
    """
    now = current(snapshot)
    out: list[Change] = []
    for name, wanted in step.settings().items():
        if now[name] == wanted:
            continue
        if wanted is not None:
            out.append(Change(name, now[name], wanted, wanted))
            continue
        from_env = normalized(name, snapshot.env.get(name))
        out.append(Change(name, now[name], None, _neutral(name) if from_env else None))
    return out


def _neutral(name: str) -> str:
    """An override that narrows nothing: an empty list, or 100 %."""
    return "100" if name.endswith("_PERCENT") else ""


def _word(on: bool) -> str:
    return "true" if on else "false"

"""The rollout flags of the seed checklist, narrowed per shopper, with the reason for each value.

Flag names are exactly the seed's. Each boolean flag is a global switch that can be
narrowed per shopper: ``<FLAG>_DENYLIST`` beats ``<FLAG>_ALLOWLIST`` beats
``<FLAG>_PERCENT``. With the switch off, the flag is off for everyone (that is the
rollback). With it on and no narrowing, it is on for everyone; with an allowlist and/or
a percentage, it is on for the allowlisted shoppers and for the shoppers whose stable
hash bucket falls under the percentage — a shopper enabled at 10 % stays enabled at 25,
50, 75 and 100 %, and the same shoppers lead in every flag.

Values come from the environment and from runtime overrides stored in the database
(``wacanon flags set``); an override for one shopper beats a global override, which
beats the environment. This module is pure: callers hand it the two mappings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wacanon.errors import ConfigError
from wacanon.probe import PROBE
from wacanon.routing.policies import POLICIES

CANONICAL_EVENTS_ENABLED = "WHATSAPP_CANONICAL_EVENTS_ENABLED"
CANONICAL_SHADOW_MODE = "WHATSAPP_CANONICAL_SHADOW_MODE"
ROUTING_ENABLED = "WHATSAPP_ROUTING_ENABLED"
GROUP_ROUTING_ENABLED = "WHATSAPP_GROUP_ROUTING_ENABLED"
ASSIGNMENT_POLICY = "WHATSAPP_ASSIGNMENT_POLICY"
#: Not a seed name (the seed's Phase 1 says only "comparative logs enabled"): ours.
COMPARATIVE_LOGS = "WACANON_COMPARATIVE_LOGS"

#: The seed's Phase 0: canonical on, shadow on, routing off.
BOOLEAN_DEFAULTS: dict[str, bool] = {
    CANONICAL_EVENTS_ENABLED: True,
    CANONICAL_SHADOW_MODE: True,
    ROUTING_ENABLED: False,
    GROUP_ROUTING_ENABLED: False,
    COMPARATIVE_LOGS: False,
}
STRING_DEFAULTS: dict[str, str] = {ASSIGNMENT_POLICY: "default"}
NARROWING_SUFFIXES = ("_ALLOWLIST", "_DENYLIST", "_PERCENT")
ROLLED_OUT_BY_TURNING_OFF = frozenset({CANONICAL_SHADOW_MODE})
GLOBAL = "*"

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def all_names() -> list[str]:
    """Every name ``wacanon flags set`` accepts."""
    names = [*BOOLEAN_DEFAULTS, *STRING_DEFAULTS]
    names += [f + s for f in BOOLEAN_DEFAULTS for s in NARROWING_SUFFIXES]
    return names


def parse_bool(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}: expected true or false, got {text!r}")


def parse_list(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def parse_percent(name: str, text: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise ConfigError(f"{name}: expected a percentage from 0 to 100, got {text!r}") from None
    if not 0 <= value <= 100:
        raise ConfigError(f"{name}: expected a percentage from 0 to 100, got {text!r}")
    return value


def validate(name: str, value: str) -> str:
    """Check a flag name and value before storing them; returns the value normalized."""
    if name not in all_names():
        raise ConfigError(f"unknown flag {name!r}; known flags: {', '.join(all_names())}")
    if name in BOOLEAN_DEFAULTS:
        return "true" if parse_bool(name, value) else "false"
    if name.endswith("_PERCENT"):
        return f"{parse_percent(name, value):g}"
    if name.endswith(("_ALLOWLIST", "_DENYLIST")):
        return ",".join(sorted(parse_list(value)))
    return parse_string(name, value)


def parse_string(name: str, text: str) -> str:
    value = text.strip()
    if not value:
        raise ConfigError(f"{name}: must not be empty")
    if name == ASSIGNMENT_POLICY and value not in POLICIES:
        raise ConfigError(f"{name}: unknown policy {value!r}; known: {', '.join(POLICIES)}")
    return value


def bucket(shopper_id: str) -> float:
    """A stable position of the shopper in [0, 100): the same for every flag and percent."""
    digest = hashlib.sha256(shopper_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def _listed(shopper_id: str, text: str, front: bool) -> bool:
    listed = parse_list(text)
    return shopper_id in listed or (front and bool(listed))


def known_shoppers(
    configured: Iterable[str], overrides: Mapping[tuple[str, str], str]
) -> list[str]:
    """The shoppers to show flags for: the configuration's and those with an override of
    their own (``flags list``, the console), sorted."""
    return sorted({*configured, *(shopper for shopper, _ in overrides if shopper != GLOBAL)})


@dataclass(frozen=True, slots=True)
class FlagValue:
    """One flag's effective value for one shopper, and why."""

    name: str
    value: bool | str
    reason: str


@dataclass(frozen=True, slots=True)
class FlagSnapshot:
    """The raw settings at one moment: environment and database overrides.

    ``overrides`` maps ``(shopper_id or "*", NAME)`` to a stored value.
    """

    env: Mapping[str, str]
    overrides: Mapping[tuple[str, str], str]

    def raw(self, name: str, shopper_id: str | None) -> tuple[str, str] | None:
        """(value, where it came from) for one setting, by precedence."""
        if shopper_id is not None and (shopper_id, name) in self.overrides:
            return self.overrides[(shopper_id, name)], f"override for shopper {shopper_id}"
        if (GLOBAL, name) in self.overrides:
            return self.overrides[(GLOBAL, name)], "global override"
        if name in self.env and self.env[name].strip() != "":
            return self.env[name], "environment"
        return None

    def boolean(self, name: str, shopper_id: str | None) -> FlagValue:
        found = self.raw(name, shopper_id)
        default = BOOLEAN_DEFAULTS[name]
        switch = parse_bool(name, found[0]) if found else default
        origin = f"{found[1]} {name}={found[0]}" if found else f"default ({default})"
        if not switch:
            return FlagValue(name, False, f"off: {origin}")
        if shopper_id is None:
            return FlagValue(name, True, f"on: {origin}")
        return self._narrow(name, shopper_id, origin)

    def _narrow(self, name: str, shopper_id: str, origin: str) -> FlagValue:
        # The probe is the rollout's front: in the list that moves shoppers forward (the
        # allowlist; shadow mode's denylist) whenever it names anyone, at bucket 0.
        probe = shopper_id == PROBE
        forward = "_DENYLIST" if name in ROLLED_OUT_BY_TURNING_OFF else "_ALLOWLIST"
        deny = self.raw(name + "_DENYLIST", shopper_id)
        if deny and _listed(shopper_id, deny[0], probe and forward == "_DENYLIST"):
            return FlagValue(name, False, f"off: {shopper_id} in {name}_DENYLIST ({deny[1]})")
        allow = self.raw(name + "_ALLOWLIST", shopper_id)
        if allow and _listed(shopper_id, allow[0], probe and forward == "_ALLOWLIST"):
            return FlagValue(name, True, f"on: {shopper_id} in {name}_ALLOWLIST ({allow[1]})")
        percent = self.raw(name + "_PERCENT", shopper_id)
        if percent is not None:
            share = parse_percent(name + "_PERCENT", percent[0])
            position = 0.0 if probe else bucket(shopper_id)
            # Shadow mode is rolled out by turning it *off*: its percent keeps the top of
            # the buckets in shadow, so the shoppers leaving shadow first are the same
            # low buckets that every other flag's percent enables first.
            verdict = (
                position >= 100 - share if name in ROLLED_OUT_BY_TURNING_OFF else position < share
            )
            word = "on" if verdict else "off"
            return FlagValue(
                name,
                verdict,
                f"{word}: bucket {position:.2f} vs {name}_PERCENT={share:g} ({percent[1]})",
            )
        if allow and parse_list(allow[0]):
            return FlagValue(name, False, f"off: {shopper_id} not in {name}_ALLOWLIST ({allow[1]})")
        return FlagValue(name, True, f"on: {origin}")

    def string(self, name: str, shopper_id: str | None) -> FlagValue:
        found = self.raw(name, shopper_id)
        if found is None:
            return FlagValue(name, STRING_DEFAULTS[name], "default")
        return FlagValue(name, parse_string(name, found[0]), found[1])

    def explain(self, shopper_id: str | None) -> list[FlagValue]:
        values = [self.boolean(name, shopper_id) for name in BOOLEAN_DEFAULTS]
        values += [self.string(name, shopper_id) for name in STRING_DEFAULTS]
        return values


@dataclass(frozen=True, slots=True)
class ShopperFlags:
    """What the pipeline needs to know about one shopper, resolved once per webhook."""

    canonical: bool
    shadow: bool
    routing: bool
    group_routing: bool
    assignment_policy: str
    comparative_logs: bool = False

    @classmethod
    def resolve(cls, snapshot: FlagSnapshot, shopper_id: str | None) -> ShopperFlags:
        def on(name: str) -> bool:
            return bool(snapshot.boolean(name, shopper_id).value)

        return cls(
            canonical=on(CANONICAL_EVENTS_ENABLED),
            shadow=on(CANONICAL_SHADOW_MODE),
            routing=on(ROUTING_ENABLED),
            group_routing=on(GROUP_ROUTING_ENABLED),
            assignment_policy=str(snapshot.string(ASSIGNMENT_POLICY, shopper_id).value),
            comparative_logs=on(COMPARATIVE_LOGS),
        )

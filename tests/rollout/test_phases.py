"""The seed's phases as flag settings (pure): each step gives every shopper the seed's
values, the narrowing moves the same shoppers first, the current flags are matched back
to their step, and applying a step writes just what makes the flags that step."""

from __future__ import annotations

import pytest

from wacanon.errors import ConfigError
from wacanon.flags import (
    CANONICAL_EVENTS_ENABLED,
    CANONICAL_SHADOW_MODE,
    COMPARATIVE_LOGS,
    GLOBAL,
    ROUTING_ENABLED,
    FlagSnapshot,
    ShopperFlags,
)
from wacanon.rollout.phases import (
    SWITCHES,
    Step,
    changes_to,
    current,
    matching,
    phase_of,
    plan,
    step_for,
)

SHOPPERS = [f"shop-{i}" for i in range(400)]


def snapshot_of(step: Step, env: dict[str, str] | None = None) -> FlagSnapshot:
    """The flags once ``step`` is applied over ``env``: its changes as global overrides."""
    base = FlagSnapshot(env=env or {}, overrides={})
    stored = {(GLOBAL, c.name): c.store for c in changes_to(step, base) if c.store is not None}
    return FlagSnapshot(env=env or {}, overrides=stored)


def resolved(step: Step, shopper: str, env: dict[str, str] | None = None) -> ShopperFlags:
    return ShopperFlags.resolve(snapshot_of(step, env), shopper)


def test_the_plan_is_the_seeds_order() -> None:
    assert [s.label for s in plan()] == [
        "0", "1", "2", "3 @ 10 %", "3 @ 25 %", "3 @ 50 %", "3 @ 75 %", "3 @ 100 %",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (Step(0), (True, True, False, False, False)),
        (Step(1), (True, True, False, False, True)),
        (Step(3, 100.0), (True, False, True, True, False)),
    ],
    ids=["phase-0", "phase-1", "phase-3-at-100"],
)
def test_unnarrowed_steps_give_every_shopper_the_seeds_values(
    step: Step, expected: tuple[bool, ...]
) -> None:
    for shopper in SHOPPERS[:50]:
        flags = resolved(step, shopper)
        got = (
            flags.canonical,
            flags.shadow,
            flags.routing,
            flags.group_routing,
            flags.comparative_logs,
        )
        assert got == expected, shopper


def test_phase_2_gives_the_allowlist_phase_2_and_the_others_phase_1() -> None:
    step = step_for(1, None, ["shop-1", "shop-2"])  # Phase 1 for a few, then Phase 2
    assert resolved(step, "shop-1").comparative_logs is True
    assert resolved(step, "shop-9").comparative_logs is False
    beta = step_for(2, None, ["shop-beta"])
    inside = resolved(beta, "shop-beta")
    outside = resolved(beta, "shop-7")
    assert (inside.canonical, inside.shadow, inside.routing, inside.group_routing) == (
        True, False, True, True,
    )  # fmt: skip
    assert (outside.canonical, outside.shadow, outside.routing, outside.group_routing) == (
        True, True, False, False,
    )  # fmt: skip
    assert outside.comparative_logs is True  # still staging, still compared
    assert inside.comparative_logs is False


@pytest.mark.parametrize("percent", [10.0, 25.0, 50.0, 75.0])
def test_phase_3_moves_the_same_shoppers_in_every_flag_and_keeps_the_beta(
    percent: float,
) -> None:
    step = Step(3, percent, frozenset({"shop-beta"}))
    produced = 0
    for shopper in [*SHOPPERS, "shop-beta"]:
        flags = resolved(step, shopper)
        stored = not flags.shadow
        assert flags.routing == stored, shopper  # out of shadow ⇔ routed
        assert flags.group_routing == stored, shopper
        produced += stored
    assert resolved(step, "shop-beta").routing is True
    share = (produced - 1) / len(SHOPPERS)
    assert abs(share - percent / 100) < 0.08


def test_a_shopper_once_on_stays_on_as_the_percent_grows() -> None:
    on_before: set[str] = set()
    for percent in (10.0, 25.0, 50.0, 75.0, 100.0):
        on = {s for s in SHOPPERS if resolved(Step(3, percent), s).routing}
        assert on_before <= on
        on_before = on
    assert on_before == set(SHOPPERS)


def test_each_step_is_matched_back_from_the_flags_it_sets() -> None:
    allow = frozenset({"shop-beta", "shop-2"})
    for step in plan():
        with_allow = Step(step.phase, step.percent, allow if step.phase == 2 else frozenset())
        found = matching(current(snapshot_of(with_allow)))
        assert found == with_allow


def test_flags_between_steps_match_none() -> None:
    env = {ROUTING_ENABLED: "true", ROUTING_ENABLED + "_PERCENT": "30"}
    assert matching(current(FlagSnapshot(env=env, overrides={}))) is None


def test_the_defaults_are_phase_0() -> None:
    assert matching(current(FlagSnapshot(env={}, overrides={}))) == Step(0)


def test_applying_undoes_the_environments_narrowing_with_a_neutral_override() -> None:
    env = {
        CANONICAL_EVENTS_ENABLED + "_ALLOWLIST": "shop-old",
        ROUTING_ENABLED: "true",
        ROUTING_ENABLED + "_PERCENT": "30",
    }
    changes = {c.name: c for c in changes_to(Step(0), FlagSnapshot(env=env, overrides={}))}
    assert changes[CANONICAL_EVENTS_ENABLED + "_ALLOWLIST"].store == ""
    assert changes[ROUTING_ENABLED + "_PERCENT"].store == "100"
    assert changes[ROUTING_ENABLED].store == "false"
    assert resolved(Step(0), "shop-x", env).canonical is True  # no longer allowlist-only
    assert matching(current(snapshot_of(Step(0), env))) == Step(0)


def test_applying_a_step_twice_changes_nothing_the_second_time() -> None:
    step = step_for(2, None, ["shop-beta"])
    assert changes_to(step, snapshot_of(step)) == []


def test_going_back_removes_our_own_overrides_rather_than_pinning_values() -> None:
    there = snapshot_of(Step(3, 50.0))
    changes = changes_to(Step(0), there)
    removed = {c.name for c in changes if c.store is None}
    assert ROUTING_ENABLED + "_PERCENT" in removed
    assert CANONICAL_SHADOW_MODE + "_PERCENT" in removed
    assert {c.name: c.after for c in changes}[ROUTING_ENABLED] == "false"
    assert all(c.store in (None, "true", "false") for c in changes)  # no neutral pins


@pytest.mark.parametrize(
    ("phase", "percent", "allow", "message"),
    [
        (4, None, [], "expected 0, 1, 2 or 3"),
        (2, None, [], "allowlist"),
        (3, None, [], "needs --percent"),
        (3, 0.0, [], "more than 0"),
        (3, 100.0, ["shop-1"], "nothing to narrow"),
        (0, None, ["shop-1"], "nothing to narrow"),
        (1, 10.0, [], "belongs to Phase 3"),
    ],
)
def test_steps_the_seed_has_not_are_refused(
    phase: int, percent: float | None, allow: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        step_for(phase, percent, allow)


def test_the_comparative_logs_flag_is_ours_and_off_by_default() -> None:
    assert COMPARATIVE_LOGS == "WACANON_COMPARATIVE_LOGS"
    assert ShopperFlags.resolve(FlagSnapshot(env={}, overrides={}), "s").comparative_logs is False


def test_a_shoppers_effective_flags_name_their_phase() -> None:
    def values_at(step: Step, shopper: str) -> dict[str, bool]:
        snapshot = snapshot_of(step)
        return {name: bool(snapshot.boolean(name, shopper).value) for name in SWITCHES}

    assert phase_of(values_at(Step(0), "shop-1")) == 0
    assert phase_of(values_at(Step(1), "shop-1")) == 1
    beta = Step(2, None, frozenset({"shop-beta"}))
    assert phase_of(values_at(beta, "shop-beta")) == 2
    assert phase_of(values_at(beta, "shop-other")) == 1  # still staging
    assert phase_of(values_at(Step(3, 100.0), "anyone")) == 2
    rolled_back = {**values_at(Step(3, 100.0), "x"), CANONICAL_EVENTS_ENABLED: False}
    assert phase_of(rolled_back) is None

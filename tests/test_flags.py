"""The seed's flags: exact names, Phase 0 defaults, per-shopper narrowing, explanations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacanon.errors import ConfigError
from wacanon.flags import (
    ASSIGNMENT_POLICY,
    CANONICAL_EVENTS_ENABLED,
    CANONICAL_SHADOW_MODE,
    GROUP_ROUTING_ENABLED,
    ROUTING_ENABLED,
    FlagSnapshot,
    ShopperFlags,
    bucket,
    validate,
)


def snapshot(env: dict[str, str] | None = None, **overrides: str) -> FlagSnapshot:
    stored = {}
    for key, value in overrides.items():
        shopper, _, name = key.partition("__")
        stored[(shopper or "*", name)] = value
    return FlagSnapshot(env=env or {}, overrides=stored)


def test_exact_names() -> None:
    assert (
        CANONICAL_EVENTS_ENABLED,
        CANONICAL_SHADOW_MODE,
        ROUTING_ENABLED,
        GROUP_ROUTING_ENABLED,
        ASSIGNMENT_POLICY,
    ) == (
        "WHATSAPP_CANONICAL_EVENTS_ENABLED",
        "WHATSAPP_CANONICAL_SHADOW_MODE",
        "WHATSAPP_ROUTING_ENABLED",
        "WHATSAPP_GROUP_ROUTING_ENABLED",
        "WHATSAPP_ASSIGNMENT_POLICY",
    )


def test_defaults_are_phase_0() -> None:
    flags = ShopperFlags.resolve(snapshot(), "shop-1")
    assert flags == ShopperFlags(
        canonical=True, shadow=True, routing=False, group_routing=False, assignment_policy="default"
    )


def test_switch_off_is_off_for_everyone_even_allowlisted() -> None:
    env = {ROUTING_ENABLED: "false", ROUTING_ENABLED + "_ALLOWLIST": "shop-1"}
    assert snapshot(env).boolean(ROUTING_ENABLED, "shop-1").value is False


def test_allowlist_narrows_to_listed_shoppers() -> None:
    env = {ROUTING_ENABLED: "true", ROUTING_ENABLED + "_ALLOWLIST": "shop-beta, shop-2"}
    s = snapshot(env)
    assert s.boolean(ROUTING_ENABLED, "shop-beta").value is True
    assert s.boolean(ROUTING_ENABLED, "shop-2").value is True
    assert s.boolean(ROUTING_ENABLED, "shop-3").value is False


def test_denylist_beats_allowlist_beats_percent() -> None:
    env = {
        ROUTING_ENABLED: "true",
        ROUTING_ENABLED + "_DENYLIST": "shop-x",
        ROUTING_ENABLED + "_ALLOWLIST": "shop-x,shop-y",
        ROUTING_ENABLED + "_PERCENT": "0",
    }
    s = snapshot(env)
    assert s.boolean(ROUTING_ENABLED, "shop-x").value is False
    assert s.boolean(ROUTING_ENABLED, "shop-y").value is True
    assert s.boolean(ROUTING_ENABLED, "shop-z").value is False


@given(st.text(min_size=1, max_size=20))
def test_a_shopper_enabled_at_a_percent_stays_enabled_as_it_grows(shopper: str) -> None:
    verdicts = [
        snapshot({ROUTING_ENABLED: "true", ROUTING_ENABLED + "_PERCENT": str(p)})
        .boolean(ROUTING_ENABLED, shopper)
        .value
        for p in (10, 25, 50, 75, 100)
    ]
    assert verdicts == sorted(verdicts)  # False... then True..., never back
    assert verdicts[-1] is True


def test_percent_buckets_are_spread() -> None:
    shoppers = [f"shop-{i}" for i in range(2000)]
    share = sum(bucket(s) < 10 for s in shoppers) / len(shoppers)
    assert 0.07 < share < 0.13


def test_override_for_a_shopper_beats_global_beats_environment() -> None:
    s = snapshot(
        {CANONICAL_EVENTS_ENABLED: "true"},
        **{"__" + CANONICAL_EVENTS_ENABLED: "false", "shop-7__" + CANONICAL_EVENTS_ENABLED: "true"},
    )
    assert s.boolean(CANONICAL_EVENTS_ENABLED, "shop-1").value is False
    assert s.boolean(CANONICAL_EVENTS_ENABLED, "shop-7").value is True
    assert "override for shopper shop-7" in s.boolean(CANONICAL_EVENTS_ENABLED, "shop-7").reason


def test_explain_says_why() -> None:
    env = {ROUTING_ENABLED: "true", ROUTING_ENABLED + "_ALLOWLIST": "shop-2"}
    values = {v.name: v for v in snapshot(env).explain("shop-1")}
    assert values[ROUTING_ENABLED].value is False
    assert "not in WHATSAPP_ROUTING_ENABLED_ALLOWLIST" in values[ROUTING_ENABLED].reason
    assert values[ASSIGNMENT_POLICY].value == "default"


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        (CANONICAL_SHADOW_MODE, "FALSE", "false"),
        (ROUTING_ENABLED + "_PERCENT", "25%", "25"),
        (ROUTING_ENABLED + "_ALLOWLIST", "b, a ,", "a,b"),
        (ASSIGNMENT_POLICY, " round_robin ", "round_robin"),
    ],
)
def test_validate_normalizes(name: str, value: str, stored: str) -> None:
    assert validate(name, value) == stored


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WHATSAPP_TYPO", "true", "unknown flag"),
        (CANONICAL_SHADOW_MODE, "maybe", "expected true or false"),
        (ROUTING_ENABLED + "_PERCENT", "150", "from 0 to 100"),
    ],
)
def test_validate_refuses_with_a_clear_message(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(name, value)


def test_shadow_mode_percent_releases_the_shoppers_other_flags_enable_first() -> None:
    env = {
        CANONICAL_SHADOW_MODE: "true",
        CANONICAL_SHADOW_MODE + "_PERCENT": "90",  # 10 % out of shadow
        ROUTING_ENABLED: "true",
        ROUTING_ENABLED + "_PERCENT": "10",  # 10 % routed
    }
    s = snapshot(env)
    shoppers = [f"shop-{i}" for i in range(500)]
    out_of_shadow = {x for x in shoppers if s.boolean(CANONICAL_SHADOW_MODE, x).value is False}
    routed = {x for x in shoppers if s.boolean(ROUTING_ENABLED, x).value is True}
    assert out_of_shadow == routed
    assert 25 < len(routed) < 75

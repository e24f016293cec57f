"""The assignment policies as pure functions: each step, capacity, ties, the cursor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wacanon.routing.policies import Facts, Load, choose

ANA = Load("skm-ana", 2, 10)
BIA = Load("skm-bia", 1, 10)
CAIO = Load("skm-caio", 5, 5)  # full
DINO = Load("skm-dino", 0, 10, active=False)


def test_default_takes_the_accounts_own_skm_first() -> None:
    d = choose("default", [ANA, BIA], Facts(account_skm="skm-ana", current_skm="skm-bia"))
    assert d is not None
    assert (d.skm_id, d.step) == ("skm-ana", "account")
    assert [c.skm_id for c in d.candidates] == ["skm-ana", "skm-bia"]


def test_default_passes_a_full_or_inactive_step_and_says_why() -> None:
    facts = Facts(account_skm="skm-caio", last_served="skm-dino", default_skm="skm-ana")
    d = choose("default", [ANA, BIA, CAIO, DINO], facts)
    assert d is not None
    assert (d.skm_id, d.step) == ("skm-ana", "default_skm")
    assert "account: skm-caio is full (5/5)" in d.reason
    assert "last_served: skm-dino is inactive" in d.reason


def test_default_keeps_the_last_served_even_when_another_is_less_loaded() -> None:
    d = choose("default", [ANA, BIA], Facts(last_served="skm-ana"))
    assert d is not None
    assert (d.skm_id, d.step) == ("skm-ana", "last_served")


def test_default_ends_with_least_loaded() -> None:
    d = choose("default", [ANA, BIA, CAIO], Facts())
    assert d is not None
    assert (d.skm_id, d.step) == ("skm-bia", "least_loaded")


def test_least_loaded_is_relative_to_capacity_and_ties_go_to_the_longest_idle() -> None:
    early, late = datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 1, 10, tzinfo=UTC)
    small = Load("skm-a", 1, 2)  # 50 %
    big = Load("skm-b", 4, 20, last_assigned_at=late)  # 20 %
    twin = Load("skm-c", 4, 20, last_assigned_at=early)  # 20 %, idle longer
    d = choose("least_loaded", [small, big, twin], Facts())
    assert d is not None
    assert d.skm_id == "skm-c"
    never = Load("skm-d", 4, 20)
    d = choose("least_loaded", [big, twin, never], Facts())
    assert d is not None
    assert d.skm_id == "skm-d"


def test_round_robin_follows_the_cursor_in_id_order_and_skips_who_has_no_room() -> None:
    pool = [ANA, BIA, CAIO, DINO]
    turns = []
    cursor = None
    for _ in range(4):
        d = choose("round_robin", pool, Facts(cursor=cursor))
        assert d is not None
        turns.append(d.skm_id)
        cursor = d.cursor
    assert turns == ["skm-ana", "skm-bia", "skm-ana", "skm-bia"]


def test_sticky_keeps_the_last_served_else_round_robin() -> None:
    d = choose("sticky", [ANA, BIA], Facts(last_served="skm-bia", cursor="skm-bia"))
    assert d is not None
    assert (d.skm_id, d.step) == ("skm-bia", "last_served")
    d = choose("sticky", [ANA, BIA], Facts(cursor="skm-ana"))
    assert d is not None
    assert (d.skm_id, d.step) == ("skm-bia", "round_robin")


@pytest.mark.parametrize("policy", ["default", "sticky", "round_robin", "least_loaded"])
def test_nobody_with_room_is_no_decision(policy: str) -> None:
    assert (
        choose(policy, [CAIO, DINO, Load("skm-zero", 0, 0)], Facts(last_served="skm-caio")) is None
    )


def test_an_unknown_policy_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="round_robin"):
        choose("fastest", [ANA], Facts())


def test_the_worked_example_in_docs_assignment_is_what_the_policy_says() -> None:
    from pathlib import Path

    pool = [Load("skm-ana", 2, 2), Load("skm-bia", 1, 5), Load("skm-caio", 0, 3, active=False)]
    d = choose("default", pool, Facts(last_served="skm-ana", default_skm="skm-caio"))
    assert d is not None
    docs = (Path(__file__).parents[2] / "docs" / "assignment.md").read_text()
    assert f'"reason": "{d.reason}"' in docs
    assert f'"step": "{d.step}"' in docs

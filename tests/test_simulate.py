"""``wacanon.simulate``: ``skm_numbers`` puts sales agents' messages into groups (so the
group rules have someone to claim them) and changes nothing when there are none."""

from __future__ import annotations

import orjson

from wacanon.simulate import SimulationOptions, generate

ANA, BIA = "5511988887777", "5511977776666"


def _facts(options: SimulationOptions) -> list[dict[str, object]]:
    return [f for body in generate(options) for f in orjson.loads(body)["events"]]


def test_skm_numbers_write_in_groups_only() -> None:
    facts = _facts(SimulationOptions(count=600, seed=3, skm_numbers=(ANA, BIA)))
    theirs = [f for f in facts if f.get("from") in (ANA, BIA)]
    assert {f["from"] for f in theirs} == {ANA, BIA}
    assert all("group" in f for f in theirs)
    in_groups = [f for f in facts if f.get("type") == "message" and "group" in f]
    assert 0.15 < len(theirs) / len(in_groups) < 0.6


def test_without_skm_numbers_no_agent_writes() -> None:
    assert not any(f.get("name") == "Vendedora" for f in _facts(SimulationOptions(count=600)))

"""``deploy/``: the Prometheus alert rules pass ``promtool check rules`` and their own unit
tests (``promtool test rules``), and they and the Grafana dashboard only name metrics
wacanon exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from wacanon.ingest.metrics import Metrics

DEPLOY = Path(__file__).parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
NAME = re.compile(r"\b((?:wacanon|process)_[a-z0-9_]+)")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported() -> set[str]:
    """Every sample name /metrics can show (one process: process_* included)."""
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    for family in Metrics().registry.collect():  # counters and histograms with no sample yet
        names.update(family.name + s for s in SUFFIXES)
    return names


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def test_the_rules_are_valid() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULES.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((RULES.parent / "alerts.test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in rules}


def test_the_rules_and_the_dashboard_name_only_exported_metrics() -> None:
    known = exported()
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    expressions = [rule["expr"] for rule in rules]
    dashboard = json.loads((DEPLOY / "grafana" / "wacanon.json").read_text())
    panels = dashboard["panels"]
    assert panels, "the dashboard has panels"
    for panel in panels:
        assert panel["targets"], panel["title"]
        expressions += [target["expr"] for target in panel["targets"]]
    for expression in expressions:
        names = NAME.findall(expression)
        assert names, expression
        unknown = [n for n in names if n not in known]
        assert not unknown, f"{unknown} in {expression}"


def test_the_dashboard_is_importable() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "wacanon.json").read_text())
    assert dashboard["uid"] == "wacanon"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["datasource"]["uid"] == "${datasource}"

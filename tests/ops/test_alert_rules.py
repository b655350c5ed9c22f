"""The alert and recording rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from opstools import require_tool
from promrules import (
    OPERATIONS,
    RULE_TESTS,
    RULES,
    alerts,
    github_anchors,
    rules,
)

pytestmark = pytest.mark.needs_tool("promtool")

REQUIRED_ALERTS = {
    "SyncdDown",
    "SyncdNoSuccessfulCycle",
    "SyncdRelationFailing",
    "SyncdPairsHeldBackGrowing",
    "SyncdRateLimited",
    "SyncdDriftRepairedOften",
    "SyncdReadinessFlapping",
    "SyncdRestarting",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool", "apt-get install prometheus (Debian ships promtool in it)")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=60, check=False,
        cwd=RULES.parent,
    )  # fmt: skip


def test_promtool_checks_the_rules() -> None:
    res = _promtool("check", "rules", RULES.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(rules())} rules found" in res.stdout


def test_promtool_unit_tests_pass() -> None:
    res = _promtool("test", "rules", RULE_TESTS.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_cases_that_fire_and_cases_that_do_not() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names == REQUIRED_ALERTS
    assert names - fires == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: str(rule["alert"]))
def test_alert_says_what_to_look_at_and_where_the_runbook_is(rule: dict[str, Any]) -> None:
    notes = rule["annotations"]
    assert {"summary", "description", "runbook_url"} <= set(notes)
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert "Look at" in notes["description"]
    page, _, anchor = notes["runbook_url"].partition("#")
    assert page.endswith("/docs/operations.md")
    assert anchor == rule["alert"].lower()
    assert anchor in github_anchors(OPERATIONS.read_text(encoding="utf-8"))

"""What the Prometheus rules and the Grafana dashboard ask of syncd, read from the files."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from opstools import REPO

RULES = REPO / "deploy" / "prometheus" / "syncd-rules.yaml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "syncd-rules.test.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "syncd.json"
OPERATIONS = REPO / "docs" / "operations.md"

PENDING_METRICS: set[str] = set()
"""Series a rule reads that syncd does not produce yet (none: drift repair counts
``syncd_pairs_total{outcome="repaired"}`` from 0 while the watch runs)."""

_METRIC = re.compile(r"\b((?:syncd|process)_[a-z0-9_]+)\b(\{[^}]*\})?")


def rules() -> list[dict[str, Any]]:
    """Every rule of every group, recording and alerting."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def metric_selectors(expr: str) -> set[str]:
    """syncd's and the process collector's series an expression reads, with their matchers.

    A regex, not a parser: every name syncd exports starts with ``syncd_`` or ``process_``,
    and recording rules (``syncd:...``) contain a colon, so they are not matched.
    """
    return {name + (matchers or "") for name, matchers in _METRIC.findall(expr)}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def panels() -> list[dict[str, Any]]:
    """Every panel, also those inside collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL expr) for every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in panels()
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def github_anchors(markdown: str) -> set[str]:
    """Heading anchors as GitHub renders them (lowercase, punctuation dropped, spaces to -)."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            text = re.sub(r"[^\w\- ]", "", text)
            anchors.add(text.replace(" ", "-"))
    return anchors

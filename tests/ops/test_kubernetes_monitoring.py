"""The optional kustomize component for the Prometheus Operator: a Service, a ServiceMonitor
and a PrometheusRule. Rendered with the base through an overlay, validated offline: the Service
against the Kubernetes schemas, the custom resources against what the Operator and
Prometheus require (promtool checks the rules), and wired to the Deployment's port."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from opstools import REPO, require_tool
from promrules import RULES

BASE = REPO / "deploy" / "kubernetes"
COMPONENT = BASE / "components" / "monitoring"
VERSIONS = ("1.29.0", "1.33.0")
DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
"""monitoring.coreos.com/v1's Duration pattern (intervals, timeouts, ``for``)."""

pytestmark = pytest.mark.needs_tool("kubernetes-validate")


def _files(directory: Path) -> str:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    return "\n---\n".join((directory / f).read_text(encoding="utf-8") for f in kust["resources"])


def _render(tmp: Path) -> list[dict[str, Any]]:
    """An overlay of the base plus the component, by ``kubectl kustomize`` when it exists."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        base = os.path.relpath(BASE, tmp)
        (tmp / "kustomization.yaml").write_text(
            f"resources:\n  - {base}\ncomponents:\n  - {os.path.relpath(COMPONENT, tmp)}\n",
            encoding="utf-8",
        )
        res = subprocess.run(
            [kubectl, "kustomize", str(tmp)], capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        text = res.stdout
    else:
        text = _files(BASE) + "\n---\n" + _files(COMPONENT)
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in _render(tmp_path_factory.mktemp("overlay"))}


def test_component_is_a_kustomize_component_the_base_leaves_out() -> None:
    kust = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kust["kind"] == "Component"
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    assert "components" not in base
    assert not any("monitoring" in r for r in base["resources"])


@pytest.mark.parametrize("version", VERSIONS)
def test_service_validates(docs: dict[str, dict[str, Any]], version: str) -> None:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: pip install kubernetes-validate")
    assert {"Service", "ServiceMonitor", "PrometheusRule", "Deployment"} <= set(docs)
    try:
        kubernetes_validate.validate(docs["Service"], version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"Service invalid for {version}: {exc}")


def test_service_monitor_scrapes_the_ops_port(docs: dict[str, dict[str, Any]]) -> None:
    svc, mon, dep = docs["Service"], docs["ServiceMonitor"], docs["Deployment"]
    pod = dep["spec"]["template"]
    (ctr,) = pod["spec"]["containers"]
    (port,) = svc["spec"]["ports"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert port["targetPort"] in {p["name"] for p in ctr["ports"]}
    assert mon["apiVersion"] == "monitoring.coreos.com/v1"
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = mon["spec"]["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"
    assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
    # The Operator names the job after the Service; SyncdDown selects that job.
    assert "jobLabel" not in mon["spec"]
    down = next(r for g in docs["PrometheusRule"]["spec"]["groups"] for r in g["rules"]
                if r.get("alert") == "SyncdDown")  # fmt: skip
    assert down["expr"].startswith(f'up{{job="{svc["metadata"]["name"]}"}}')


def test_prometheus_rule_holds_the_rules_file(
    docs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    rule = docs["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    expected = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert rule["spec"]["groups"] == expected, "copy deploy/prometheus/syncd-rules.yaml's groups"
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert "for" not in r or DURATION.match(r["for"]), r
    extracted = tmp_path / "rules.yaml"
    extracted.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    tool = require_tool("promtool", "apt-get install prometheus (Debian ships promtool in it)")
    res = subprocess.run(
        [tool, "check", "rules", str(extracted)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr

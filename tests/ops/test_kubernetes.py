"""The kustomize deployment: renders, validates against Kubernetes schemas offline,
and keeps the properties the daemon depends on (probes, paths, securityContext)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from opstools import REPO

from syncd.config.load import load_settings

KUSTOMIZE_DIR = REPO / "deploy" / "kubernetes"
VERSIONS = ("1.29.0", "1.33.0")

pytestmark = pytest.mark.needs_tool("kubernetes-validate")


def _render() -> list[dict[str, Any]]:
    """``kubectl kustomize`` when kubectl exists; else the listed files as they are."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        res = subprocess.run(
            [kubectl, "kustomize", str(KUSTOMIZE_DIR)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        text = res.stdout
    else:
        kust = yaml.safe_load((KUSTOMIZE_DIR / "kustomization.yaml").read_text())
        text = "\n---\n".join((KUSTOMIZE_DIR / f).read_text() for f in kust["resources"])
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in _render()}


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate(docs: dict[str, dict[str, Any]], version: str) -> None:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: pip install kubernetes-validate")
    assert set(docs) == {"ConfigMap", "Secret", "ServiceAccount", "Deployment"}
    for doc in docs.values():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {version}: {exc}")


def test_deployment_is_one_restrictive_replica(docs: dict[str, dict[str, Any]]) -> None:
    dep = docs["Deployment"]["spec"]
    assert dep["replicas"] == 1
    assert dep["strategy"] == {"type": "Recreate"}
    pod = dep["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (ctr,) = pod["containers"]
    sc = ctr["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "limits" in ctr["resources"] and "requests" in ctr["resources"]
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e["value"] for e in ctr["env"]}
    assert env["SYNCD_OPS__HOST"] == "0.0.0.0"
    assert env["SYNCD_CONFIG"] == "/etc/syncd/syncd.toml"
    mounts = {m["mountPath"]: m["name"] for m in ctr["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/var/lib/syncd"]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert (
        volumes[mounts["/etc/syncd"]]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    )
    secret = volumes[mounts["/run/secrets/syncd"]]["secret"]
    assert secret["secretName"] == docs["Secret"]["metadata"]["name"]
    assert secret["items"] == [{"key": "app_secret", "path": "app_secret"}]
    port = ctr["ports"][0]["containerPort"]
    assert str(port) == dep["template"]["metadata"]["annotations"]["prometheus.io/port"]


def test_configmap_toml_is_a_valid_config(
    docs: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = docs["ConfigMap"]["data"]
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(data["syncd.toml"], encoding="utf-8")
    secret = tmp_path / "app_secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    # In the pod the Secret is a file at this path; here it is a temp file.
    assert 'app_secret_file = "/run/secrets/syncd/app_secret"' in data["syncd.toml"]
    monkeypatch.setenv("SYNCD_CMDB__APP_SECRET_FILE", str(secret))
    monkeypatch.setenv("SYNCD_OPS__HOST", "0.0.0.0")
    settings = load_settings(cfg)
    assert settings.state.path == Path("/var/lib/syncd/state.db")
    assert settings.ops.enabled and settings.ops.host == "0.0.0.0"
    ctr = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert settings.ops.port == ctr["ports"][0]["containerPort"]

"""The optional kustomize component for NetBox webhooks: renders over the base, validates
offline, and wires a listener of its own (port, Service, secret file) the config can use."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from opstools import REPO

from syncd.config.load import load_settings

BASE = REPO / "deploy" / "kubernetes"
COMPONENT = BASE / "components" / "netbox-webhooks"
SECRET_PATH = "/run/secrets/syncd-webhook/netbox_webhook_secret"

pytestmark = [pytest.mark.needs_tool("kubernetes-validate"), pytest.mark.needs_tool("kubectl")]


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to render a component over the base")
    tmp = tmp_path_factory.mktemp("overlay")
    (tmp / "kustomization.yaml").write_text(
        f"resources:\n  - {os.path.relpath(BASE, tmp)}\n"
        f"components:\n  - {os.path.relpath(COMPONENT, tmp)}\n",
        encoding="utf-8",
    )
    res = subprocess.run(
        [kubectl, "kustomize", str(tmp)], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    return {
        (doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(res.stdout) if doc
    }


def test_component_renders_valid_manifests(docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    import kubernetes_validate  # type: ignore[import-untyped]

    assert ("Secret", "syncd-netbox-webhook") in docs and ("Service", "syncd-hooks") in docs
    for doc in docs.values():
        kubernetes_validate.validate(doc, "1.33.0", strict=True)


def test_the_hooks_port_is_its_own_and_the_secret_is_a_file(
    docs: dict[tuple[str, str], dict[str, Any]],
) -> None:
    pod = docs[("Deployment", "syncd")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SYNCD_HOOKS__LISTEN"] == "0.0.0.0:9109"
    assert env["SYNCD_OPS__HOST"] == "0.0.0.0" and "SYNCD_CONFIG" in env  # the base's stay
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"ops": 9108, "hooks": 9109}
    service = docs[("Service", "syncd-hooks")]["spec"]
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(9109, "hooks")]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == "netbox-webhook")
    item = volume["secret"]["items"][0]
    assert f"{mounts['netbox-webhook']}/{item['path']}" == SECRET_PATH
    assert volume["secret"]["secretName"] == "syncd-netbox-webhook"


def test_the_config_the_component_documents_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The [hooks.netbox] lines in the component's comment, with the env it sets, are a
    valid config (the secret file at the mounted path is stood in for by a temp file)."""
    secret = tmp_path / "netbox_webhook_secret"
    secret.write_text("s3cret", encoding="utf-8")
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f"""
[cmdb]
url = "http://127.0.0.1:1"
app_code = "syncd"
app_secret = "s"

[hooks.netbox]
url = "https://netbox.example.com"
secret_file = "{secret}"

[[relations]]
name = "dc"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "bk_switch_connect_host"
source = {{ type = "netbox", url = "https://netbox.example.com", token = "{"t" * 40}" }}
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("SYNCD_HOOKS__LISTEN", "0.0.0.0:9109")
    settings = load_settings(cfg)
    assert settings.hooks.address() == ("0.0.0.0", 9109)
    text = (COMPONENT / "kustomization.yaml").read_text(encoding="utf-8")
    assert f'secret_file = "{SECRET_PATH}"' in text

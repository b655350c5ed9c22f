"""The systemd unit: ``systemd-analyze verify`` and an offline security score.

``verify`` checks that ExecStart's binary exists and is executable; the unit
names the install path /opt/syncd/bin/syncd, which a test machine does not
have. So the test verifies a temporary copy whose ExecStart points at this
venv's python (an executable that exists), everything else byte for byte.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from opstools import REPO, require_tool

from syncd.runtime.listener import ListenerLimits

UNIT = REPO / "systemd" / "syncd.service"
INSTALLED = "/opt/syncd/bin/syncd"

pytestmark = pytest.mark.needs_tool("systemd-analyze")


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED} " in text
    copy = tmp_path / "syncd.service"
    copy.write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={sys.executable} "))
    return copy


def test_unit_verifies(unit_copy: Path) -> None:
    exe = require_tool("systemd-analyze", "apt-get install -y systemd")
    res = subprocess.run(
        [exe, "verify", "--man=no", str(unit_copy)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # verify also reports problems in unrelated system units; only ours count.
    ours = [line for line in (res.stdout + res.stderr).splitlines() if "syncd.service" in line]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr


def test_unit_security_exposure_is_low(unit_copy: Path) -> None:
    exe = require_tool("systemd-analyze", "apt-get install -y systemd")
    res = subprocess.run(
        [exe, "security", "--offline=true", "--no-pager", str(unit_copy)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for syncd\.service: (\d+\.\d+)", res.stdout)
    assert match, res.stdout + res.stderr
    assert float(match.group(1)) <= 2.0, res.stdout


def test_unit_has_what_the_daemon_relies_on() -> None:
    d = _directives(UNIT.read_text(encoding="utf-8"))
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["ExecStart"] == [f"{INSTALLED} run --config /etc/syncd/syncd.toml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "WatchdogSec" in d
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["78"]
    assert d["LoadCredential"] == ["app_secret:/etc/syncd/app_secret"]
    assert d["StateDirectory"] == ["syncd"]
    assert d["ConfigurationDirectory"] == ["syncd"]
    assert d["DynamicUser"] == ["yes"]
    assert d["UMask"] == ["0077"]
    for key in (
        "ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "PrivateDevices",
        "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
        "LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures",
    ):  # fmt: skip
        assert key in d, key
    assert d["ProtectSystem"] == ["strict"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert d["SystemCallFilter"][0] == "@system-service"
    assert d["CapabilityBoundingSet"] == [""]


def test_unit_raises_the_open_file_limit_and_the_listeners_stay_below_it() -> None:
    """systemd's default soft limit is 1,024: 1,100 idle clients once took it all."""
    d = _directives(UNIT.read_text(encoding="utf-8"))
    assert len(d.get("LimitNOFILE", [])) == 1, "the unit must set LimitNOFILE="
    nofile = int(d["LimitNOFILE"][0])
    assert nofile >= 4096
    cap = ListenerLimits().connection_cap(nofile)
    # Two listeners (ops, webhooks) at their cap leave three quarters for everything else.
    assert 2 * cap <= nofile // 4


def test_the_unit_names_the_optional_credentials_the_config_reads() -> None:
    """The commented LoadCredential= lines use the ids syncd looks for (a typo there would
    leave the webhook secret or the resync token unread)."""
    text = UNIT.read_text(encoding="utf-8")
    optional = re.findall(r"^#LoadCredential=(\w+):/etc/syncd/(\w+)$", text, re.MULTILINE)
    assert optional == [
        ("netbox_webhook_secret", "netbox_webhook_secret"),
        ("resync_token", "resync_token"),
    ]
    config = "".join(
        p.read_text(encoding="utf-8") for p in sorted((REPO / "syncd" / "config").glob("*.py"))
    )
    for name, _ in optional:
        assert f'"{name}"' in config, name

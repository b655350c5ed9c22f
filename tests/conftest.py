"""Shared pytest fixtures: a simulator on loopback, subprocess cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from tests.helpers import Proc, fixture_dict


@pytest.fixture
def sim_factory() -> Callable[..., Simulator]:
    def make(options: SimulatorOptions | None = None, **fixture_kw: Any) -> Simulator:
        return Simulator(
            Fixture.from_dict(fixture_dict(**fixture_kw)), options or SimulatorOptions()
        )

    return make


@pytest.fixture
async def sim(sim_factory: Callable[..., Simulator]) -> AsyncIterator[tuple[Simulator, str]]:
    simulator = sim_factory()
    async with simulator.running(host="127.0.0.1", port=0) as url:
        yield simulator, url


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


# Whole files of process-level tests (subprocesses, containers, external linters).
_SLOW_FILES = (
    "tests/bench/",
    "tests/daemon/test_daemon_process.py",
    "tests/ops/test_container.py",
    "tests/ops/test_dockerfile.py",
    "tests/ops/test_kubernetes.py",
    "tests/ops/test_notify_daemon.py",
    "tests/ops/test_pid1.py",
    "tests/ops/test_systemd_unit.py",
    "tests/simulator/test_sim_cli.py",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a process-level or long test; `pytest -m 'not slow'` is the fast loop"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that starts real processes (the ``procs`` fixture) is slow, as are the
    files above; others say so with ``@pytest.mark.slow``."""
    root = str(config.rootpath)
    for item in items:
        path = str(item.path).removeprefix(root + "/")
        if "procs" in getattr(item, "fixturenames", ()) or path.startswith(_SLOW_FILES):
            item.add_marker(pytest.mark.slow)

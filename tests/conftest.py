"""Shared pytest fixtures: a simulator on loopback, subprocess cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from syncd.simulator import Fixture, Simulator, SimulatorOptions
from tests.helpers import Proc, fixture_dict


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts real processes (deselect: -m 'not slow')")


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

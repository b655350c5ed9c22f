"""The benchmark smoke tests serve their simulators from a thread of the test process.

A smoke test proves that a scenario runs end to end and reports sane figures, not how
fast: the syncd children it measures stay real processes (their CPU and RSS come from
``os.wait4``), while the simulator, the same server with the same command-line options
over real HTTP, saves starting and importing an interpreter per run (about 20 per suite).
A test marked ``process_simulator`` keeps bench's own simulator processes (their start,
URL line, SIGTERM and CPU figure).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

import bench
from bench import common
from cmdb_simulator import cli as sim_cli
from tests.helpers import ThreadSimulator


@dataclass
class ThreadedSimulator(common.Simulator):
    """``bench.common.Simulator`` served from a thread; ``cpu`` stays 0 (not measured)."""

    _served: ThreadSimulator | None = field(default=None, repr=False)

    def __enter__(self) -> ThreadedSimulator:
        parser = argparse.ArgumentParser()
        sim_cli.add_arguments(parser)
        self._served = ThreadSimulator(
            sim_cli.simulator_from_args(parser.parse_args(self.options()))
        )
        self.url = self._served.url
        return self

    def __exit__(self, *exc: object) -> None:
        if self._served is not None:
            self._served.kill()
            self._served = None


_PROCESS = common.Simulator


@pytest.fixture(autouse=True)
def _simulators_in_threads(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if request.node.get_closest_marker("process_simulator") is None:
        for name, module in list(sys.modules.items()):
            if (
                name.startswith(f"{bench.__name__}.")
                and getattr(module, "Simulator", None) is _PROCESS
            ):
                monkeypatch.setattr(module, "Simulator", ThreadedSimulator)
    yield

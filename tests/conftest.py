"""Shared pytest fixtures: a simulator on loopback, subprocess cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

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


# Property tests: 50 examples each in the suite (most pure-core properties fail within a few
# examples; shrinking keeps a failure's example small); `--hypothesis-profile=thorough`
# searches 20 times deeper, e.g. after a change to syncd/core. An explicit @settings wins.
settings.register_profile("suite", max_examples=50)
settings.register_profile("thorough", max_examples=1000)
settings.load_profile("suite")


# Whole files of process-level tests (subprocesses, containers, external linters).
_SLOW_FILES = (
    "tests/bench/",
    "tests/runtime/test_daemon_process.py",
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
    config.addinivalue_line(
        "markers", "process_simulator: a benchmark smoke test keeps bench's simulator processes"
    )


# Under pytest-xdist (`make unit`: `-n 5 --dist loadgroup`) the tests of one group run on one
# worker, one after another: files whose module-scoped fixture (a Prometheus, a cluster's
# manifests) is built once, and the tests that assert a pace or a cap on a rate over time,
# which must not share the worker with each other (a stall followed by a catch-up burst on a
# loaded worker would look like a pacing bug). The benchmark smoke tests assert no rate cap
# (their only bound, peak in-flight requests, is a semaphore's), so they are not in that
# serial chain: it would be the suite's critical path. The container build (minutes, CI
# only) has a worker to itself and is handed out first, so nothing queues behind it.
_GROUPS = {
    "tests/ops/test_container.py": "container",
    "tests/ops/test_prometheus_scrape.py": "prometheus",
    "tests/ops/test_kubernetes.py": "kubernetes",
    "tests/ops/test_kubernetes_monitoring.py": "kubernetes",
    "tests/cmdb/test_client_pacing.py": "timing",
    "tests/core/test_ratelimit.py": "timing",
    "tests/simulator/test_sim_limits_faults.py": "timing",
    "tests/sources/test_src_netbox_paging.py": "timing",
}
# Long work units first, so the last ones to finish are short: the container build, the
# serial timing chain, the longest process-level files (kills at random moments, the
# Prometheus module, the longest waits), then the other process-level files.
_LONG = (
    "tests/engine/test_faults.py",
    "tests/runtime/test_ownership_crashes.py",
    "tests/runtime/test_daemon_process.py",
    "tests/ops/test_prometheus_scrape.py",
    "tests/runtime/test_ops_flood_process.py",
    "tests/runtime/test_move_crash.py",
    "tests/informer/test_watch_inflight.py",
    "tests/bench/test_bench_smoke.py",
)
_FIRST = (
    "tests/ops/test_container.py",
    *(p for p, g in _GROUPS.items() if g == "timing"),
    *_LONG,
)


def _order(path: str) -> int:
    for rank, prefix in enumerate(_FIRST):
        if path.startswith(prefix):
            return rank
    return len(_FIRST) + (0 if path.startswith(_SLOW_FILES) else 1)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups off the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that starts real processes (the ``procs`` fixture) is slow, as are the
    files above; others say so with ``@pytest.mark.slow``. Groups and order for xdist: above."""
    root = str(config.rootpath)
    paths = {id(item): str(item.path).removeprefix(root + "/") for item in items}
    for item in items:
        path = paths[id(item)]
        if "procs" in getattr(item, "fixturenames", ()) or path.startswith(_SLOW_FILES):
            item.add_marker(pytest.mark.slow)
        for prefix, group in _GROUPS.items():
            if path.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: _order(paths[id(item)]))  # stable: file order kept within

"""A fresh simulator on loopback per test, with a client for both gateways."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sim_client import Cmdb, fixture_doc

from cmdb_simulator import Fixture, Simulator, SimulatorOptions


@pytest.fixture
def options() -> SimulatorOptions:
    return SimulatorOptions()


@pytest.fixture
async def cmdb(options: SimulatorOptions) -> AsyncIterator[Cmdb]:
    sim = Simulator(Fixture.from_dict(fixture_doc()), options)
    async with sim.running(host="127.0.0.1", port=0) as url, aiohttp.ClientSession() as session:
        yield Cmdb(sim, url, session)

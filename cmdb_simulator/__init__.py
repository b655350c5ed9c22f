"""A BlueKing CMDB stand-in behind both gateways (legacy ESB and API gateway).

Faithful to the rules in ``docs/bk-cmdb.md`` and bk-cmdb's own source where
those are silent; fast enough that syncd's benchmarks measure syncd, not it.
See docs/simulator.md.
"""

from cmdb_simulator.faults import ALL_FAULT_KINDS, FAULT_KINDS
from cmdb_simulator.fixture import Fixture, FixtureError
from cmdb_simulator.server import Simulator, SimulatorOptions

__all__ = [
    "ALL_FAULT_KINDS",
    "FAULT_KINDS",
    "Fixture",
    "FixtureError",
    "Simulator",
    "SimulatorOptions",
]

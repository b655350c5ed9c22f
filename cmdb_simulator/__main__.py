"""``python -m cmdb_simulator``: same as ``syncd simulate``."""

import sys

from cmdb_simulator.cli import main

sys.exit(main())

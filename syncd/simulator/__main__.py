"""``python -m syncd.simulator``: same as ``syncd simulate``."""

import sys

from syncd.simulator.cli import main

sys.exit(main())

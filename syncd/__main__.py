"""``python -m syncd`` is the ``syncd`` command (SIGHUP is already held: syncd/__init__.py)."""

import sys

from syncd.cli import main

sys.exit(main())

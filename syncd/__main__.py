"""``python -m syncd`` is the ``syncd`` command."""

import signal
import sys

# Before anything else (the imports below take a while): a SIGHUP during start-up must
# not kill the daemon. It stays pending until the daemon handles it (a resync).
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})

from syncd.cli import main  # noqa: E402

sys.exit(main())

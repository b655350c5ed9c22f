"""The ``syncd`` command: ``python -m syncd`` and the console script both start here."""

import signal
import sys

# syncd's first instruction, before the imports (they take a while): a SIGHUP during
# start-up must not kill the daemon. It stays pending until the daemon handles it (a
# resync); other commands take it back at once (syncd/cli.py).
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})

from syncd.support import startup  # noqa: E402

startup.hold()  # no collections while the imports build what lives until exit

from syncd.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

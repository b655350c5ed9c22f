"""syncd: keeps BlueKing CMDB instance associations in step with a topology source."""

import os as _os
import signal as _signal
import sys as _sys

__version__ = "0.1.0"


def _is_the_syncd_command() -> bool:
    """Started as ``syncd ...`` or ``python -m syncd ...`` (not a library import)."""
    argv = getattr(_sys, "orig_argv", [])
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") == "syncd":
        return True
    return any(a == "-m" and argv[i + 1 : i + 2] == ["syncd"] for i, a in enumerate(argv))


if _is_the_syncd_command():
    # syncd's first instruction: a SIGHUP during start-up (imports take a while) must not
    # kill the daemon; it stays pending until the daemon handles it (a resync).
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGHUP})

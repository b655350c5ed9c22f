"""The state file's lock: one syncd writes a state file at a time.

An exclusive ``flock`` on '<path>.lock', held for the daemon's life, kept apart from the
database so the rule "one writer" is stated in one place.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from syncd.state.errors import StateError, StateLocked


def take_lock(path: Path) -> IO[str]:
    """An exclusive flock on '<path>.lock', with our pid in it for the next one to name."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fh = open(lock_path, "a+", encoding="ascii")  # noqa: SIM115 - held until close()
    except OSError as exc:
        try:  # a read-only directory: an existing lock file still locks (no pid in it)
            fh = open(lock_path, encoding="ascii")  # noqa: SIM115 - held until close()
        except OSError:
            raise StateError(f"cannot open the state lock {lock_path}: {exc}") from exc
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read(20).strip()
        fh.close()
        raise StateLocked(path, holder) from None
    if fh.writable():
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
    return fh

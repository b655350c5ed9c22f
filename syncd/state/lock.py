"""The state file's lock: one syncd writes a state file at a time.

An exclusive ``flock`` on '<path>.lock' (:class:`syncd.support.pidlock.PidLock`), held for
the daemon's life, kept apart from the database so the rule "one writer" is stated in one
place.
"""

from __future__ import annotations

from pathlib import Path

from syncd.state.errors import StateError, StateLocked
from syncd.support.pidlock import LockBusy, PidLock


def take_lock(path: Path) -> PidLock:
    """An exclusive flock on '<path>.lock', with our pid in it for the next one to name."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        return PidLock.take(lock_path)
    except LockBusy as exc:
        raise StateLocked(path, "" if exc.holder is None else str(exc.holder)) from None
    except OSError as exc:
        raise StateError(f"cannot open the state lock {lock_path}: {exc}") from exc

"""Change detection without new dependencies: poll a file's (size, mtime_ns, inode).

Polling a stat is cheap, works on every filesystem (NFS, container bind mounts) where
inotify does not, and catches the atomic-rename pattern most tools use to replace a
file (the inode changes even when size and mtime look the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import structlog

log = structlog.get_logger("syncd.sources")

Fingerprint = tuple[int, int, int]


def fingerprint(path: Path) -> Fingerprint | None:
    """(size, mtime_ns, inode) of a file, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


async def watch_file(
    path: Path | str,
    on_change: Callable[[], None],
    interval: float,
    stop: asyncio.Event,
) -> None:
    """Call ``on_change`` each time the file's fingerprint differs from the last poll.

    Appearing and disappearing count as changes. Returns when ``stop`` is set.
    A failing callback is logged and the watch goes on.
    """
    target = Path(path)
    last = fingerprint(target)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
        if stop.is_set():
            return
        now = fingerprint(target)
        if now != last:
            last = now
            try:
                on_change()
            except Exception as exc:  # a watcher must outlive its callback's bugs
                log.error("watch_callback_failed", path=str(target), error=repr(exc))

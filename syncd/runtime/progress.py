"""A one-line progress bar on stderr for ``syncd once`` on a terminal.

The JSON lines stay on stdout, untouched; the bar redraws itself in place on
stderr, at most ten times a second, so it costs nothing measurable.
"""

from __future__ import annotations

import time
from typing import TextIO


class ProgressBar:
    """``bar(sent, total)`` after each request; ``close()`` ends the line."""

    def __init__(self, stream: TextIO, *, width: int = 30, min_interval: float = 0.1) -> None:
        self.stream = stream
        self.width = width
        self.min_interval = min_interval
        self._last = 0.0
        self._drawn = False

    def __call__(self, sent: int, total: int) -> None:
        now = time.monotonic()
        if sent < total and now - self._last < self.min_interval:
            return
        self._last = now
        self.stream.write("\r" + render(sent, total, self.width))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def render(sent: int, total: int, width: int = 30) -> str:
    """``[#########.....] 1,200/5,000 pairs sent (24%)``"""
    total = max(total, sent, 1)
    filled = width * sent // total
    percent = 100 * sent // total
    return f"[{'#' * filled}{'.' * (width - filled)}] {sent:,}/{total:,} pairs sent ({percent}%)"

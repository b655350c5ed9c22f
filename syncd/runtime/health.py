"""Liveness and readiness, as plain state the daemon updates and the ops server reads.

Liveness answers "is the event loop still turning?": a heartbeat task beats
every second or so; if the loop is blocked or starved the beat goes stale and
/healthz fails, so a supervisor restarts us. Readiness answers "is the
CMDB being kept in step?": the last cycle finished with no relation-level
failure and not too long ago. Not ready does not mean restart; it means look.
Times are monotonic seconds so wall-clock jumps don't flip either answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Health:
    """Heartbeat and last-cycle facts; ``alive``/``ready`` turn them into answers."""

    max_age: float
    """Readiness: the last cycle must have finished within this many seconds
    (e.g. ``2 * sync.interval + grace``: one slow cycle is tolerated, two are not)."""
    stale_after: float = 30.0
    """Liveness: the heartbeat may be this old, in seconds, before we call the loop stuck."""
    clock: Callable[[], float] = time.monotonic
    started_at: float = field(default=-1.0)
    last_beat: float | None = None
    last_cycle_at: float | None = None
    last_cycle_ok: bool | None = None
    last_summary: dict[str, Any] = field(default_factory=dict)
    cycles: int = 0
    watch: Callable[[], dict[str, Any]] | None = None
    """The CMDB watch's own view (syncd.informer.watch), when it runs."""
    push: Callable[[], str | None] | None = None
    """Why pushed changes are not in the CMDB yet (syncd.runtime.changefeed), or None."""

    def __post_init__(self) -> None:
        if self.started_at < 0:
            self.started_at = self.clock()

    def beat(self) -> None:
        """Called from the event loop: proves the loop runs callbacks."""
        self.last_beat = self.clock()

    def cycle_finished(self, ok: bool, summary: dict[str, Any]) -> None:
        """Record a finished cycle; ``ok`` is False if any relation failed as a whole."""
        self.last_cycle_at = self.clock()
        self.last_cycle_ok = ok
        self.last_summary = dict(summary)
        self.cycles += 1

    async def heartbeat_loop(self, stop: asyncio.Event, period: float = 1.0) -> None:
        """Beat every ``period`` seconds until ``stop`` is set (run it as a task)."""
        while not stop.is_set():
            self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    def alive(self, now: float | None = None) -> tuple[bool, str]:
        now = self.clock() if now is None else now
        if self.last_beat is None:
            # Starting up: give the loop stale_after seconds to produce its first beat.
            age = now - self.started_at
            if age <= self.stale_after:
                return True, "starting"
            return False, f"no heartbeat {age:.0f}s after start"
        age = now - self.last_beat
        if age > self.stale_after:
            return False, f"event loop heartbeat is {age:.0f}s old (limit {self.stale_after:.0f}s)"
        return True, "event loop running"

    def ready(self, now: float | None = None) -> tuple[bool, str]:
        now = self.clock() if now is None else now
        if self.last_cycle_at is None:
            return False, "no cycle finished yet"
        age = now - self.last_cycle_at
        if not self.last_cycle_ok:
            failed = self.last_summary.get("relations_failed")
            which = f"{failed} relation(s)" if isinstance(failed, int) else "a relation"
            return False, f"last cycle failed for {which}"
        if age > self.max_age:
            return False, f"last cycle finished {age:.0f}s ago (limit {self.max_age:.0f}s)"
        waiting = self.push() if self.push is not None else None
        if waiting is not None:
            return False, waiting
        return True, f"last cycle ok {age:.0f}s ago"

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-able view for /readyz and debugging; counts only, no secrets."""
        now = self.clock() if now is None else now
        return {
            "cycles": self.cycles,
            "last_cycle_age": (
                None if self.last_cycle_at is None else round(now - self.last_cycle_at, 3)
            ),
            "last_cycle": self.last_summary,
            **({"watch": self.watch()} if self.watch is not None else {}),
        }

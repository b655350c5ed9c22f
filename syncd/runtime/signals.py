"""A daemon's signals: SIGTERM/SIGINT stop it, SIGHUP asks for a resync, and a timer ends
the process when a stop outlasts its deadline.

Its own object (the daemon holds one) because the stop signal is handled in Python,
not by the loop: it runs even while the loop thread waits in a state write, and it is
the only part of the daemon that may end the process from another thread.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable

import structlog

from syncd.config.settings import SyncSettings
from syncd.state.db import stop_waiting

log = structlog.get_logger("syncd")

EXIT_GRACE = 2.0
"""Seconds past ``shutdown_deadline`` after the first stop signal before a forced exit."""


class DaemonSignals:
    """Installs the handlers for one run and arms the exit guard; ``on_stop`` and
    ``on_resync`` are called in the loop."""

    def __init__(
        self,
        sync: SyncSettings,
        on_stop: Callable[[int | None], None],
        on_resync: Callable[[], None],
    ) -> None:
        self.sync = sync
        self.on_stop = on_stop
        self.on_resync = on_resync
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._stop_signalled = False
        self._exit_guard: threading.Timer | None = None
        self._previous: dict[int, signal._HANDLER] = {}

    def arm_exit_guard(self, signum: int | None) -> None:
        """Whatever still runs after the deadline (a worker thread, a wait inside SQLite)
        cannot keep the process: a timer thread ends it a moment after."""
        if self._exit_guard is not None:
            return
        grace = self.sync.shutdown_deadline + EXIT_GRACE
        code = 128 + (signum or signal.SIGTERM)

        def force() -> None:
            log.error("shutdown_forced", waited=grace, action="exit now")
            os._exit(code)

        self._exit_guard = threading.Timer(grace, force)
        self._exit_guard.daemon = True
        self._exit_guard.start()

    def _on_stop_signal(self, signum: int, _frame: object) -> None:
        """SIGTERM/SIGINT, handled in Python (not by the loop): it runs even while the loop
        thread waits in a state write, and the loop hears of it at once."""
        if self._stop_signalled:
            os._exit(128 + signum)  # the second one: at once, the state is transactional
        self._stop_signalled = True
        self.arm_exit_guard(signum)
        stop_waiting.set()  # a state write waiting on another program's lock gives up
        if self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self.on_stop, signum)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._event_loop = loop
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGHUP, self.on_resync)
        # Held since the first instruction (syncd/__main__.py): any pending one is a resync.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        """Gives the signals back, except on the way out of a stop: then a second stop
        signal still exits at once with 128 + signum, never by the default action (which
        would report death by signal instead of the exit code the first one promised)."""
        loop.remove_signal_handler(signal.SIGHUP)
        if not self._stop_signalled:
            for sig, previous in self._previous.items():
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        if self._exit_guard is not None:
            self._exit_guard.cancel()

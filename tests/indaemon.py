"""``syncd run`` in the test process, driven as a test drives a subprocess (tests/helpers.py
``Proc``): for the tests where a process proves nothing extra, that is no signal, kill,
pidfile, exit status or start-up in question, only what the running daemon does.

The daemon runs in the main thread (its signal handlers need it) on its own event loop;
the test's body runs meanwhile in a thread and reads the daemon's log lines, the same
JSON the process would write to stdout. That saves starting and importing a second
interpreter (about one CPU-second) per daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from syncd.config.load import load_settings
from syncd.config.settings import Settings
from syncd.runtime.daemon import Daemon
from syncd.support import log as syncd_log


class _Lines:
    """A stream for the daemon's logger: each JSON line kept as it is written."""

    def __init__(self) -> None:
        self.raw: list[str] = []
        self.lines: list[dict[str, Any]] = []
        self._partial = ""

    def write(self, text: str) -> int:
        *whole, self._partial = (self._partial + text).split("\n")
        for line in whole:
            self.raw.append(line)
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                self.lines.append(doc)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class InProcessDaemon:
    """The running daemon as the body sees it: ``lines``, ``wait_for``, ``count`` as on a
    ``Proc``; ``stop()`` in place of SIGTERM, returning the exit status."""

    def __init__(
        self, daemon: Daemon, out: _Lines, err: io.StringIO, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.daemon = daemon
        self.lines = out.lines
        self.raw = out.raw
        self._err = err
        self._loop = loop
        self.exited = threading.Event()
        self.stop_requested = False
        self.code: int | None = None

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0, start: int = 0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self.exited.is_set()
            for line in list(self.lines[start:]):
                if pred(line):
                    return line
            if exited:
                raise AssertionError(f"the daemon exited ({self.code}) first: {self.raw[-5:]}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting; last lines: {self.raw[-5:]}")

    def stderr(self) -> str:
        """What was written to stderr meanwhile (by anything in this process)."""
        return self._err.getvalue()

    def count(self, pred: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for line in list(self.lines) if pred(line))

    def stop(self, timeout: float = 20.0) -> int:
        """What SIGTERM does (``Daemon.request_stop``); the exit status ``run`` returned."""
        if not self.stop_requested and not self.exited.is_set():
            self.stop_requested = True
            self._loop.call_soon_threadsafe(self.daemon.request_stop, signal.SIGTERM)
        assert self.exited.wait(timeout), "the daemon did not stop"
        assert self.code is not None, "the daemon failed"
        return self.code


def run_daemon(cfg: Path, body: Callable[[InProcessDaemon], None], timeout: float = 120) -> int:
    """``syncd run --config CFG`` in this process until ``body`` (in a thread) returns;
    then stopped as by SIGTERM if it still runs. Returns its exit status; a failure in
    ``body`` or the daemon is raised. Call it from a sync test (it runs its own loop)."""
    settings = load_settings(cfg)
    saved, fast = structlog.get_config(), syncd_log._fast
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    out, err = _Lines(), io.StringIO()
    syncd_log.configure(settings.log.level, "json", stream=out)  # type: ignore[arg-type]
    try:
        with contextlib.redirect_stderr(err):
            return asyncio.run(_main(settings, out, err, body, timeout))
    finally:
        structlog.configure(**saved)
        syncd_log._fast = fast
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


async def _main(
    settings: Settings,
    out: _Lines,
    err: io.StringIO,
    body: Callable[[InProcessDaemon], None],
    limit: float,
) -> int:
    daemon = Daemon(settings)
    handle = InProcessDaemon(daemon, out, err, asyncio.get_running_loop())
    running = asyncio.create_task(daemon.run())

    def exited(task: asyncio.Task[int]) -> None:
        if not task.cancelled() and task.exception() is None:
            handle.code = task.result()
        handle.exited.set()

    running.add_done_callback(exited)
    try:
        async with asyncio.timeout(limit):
            await asyncio.to_thread(body, handle)
    finally:
        if not running.done() and not handle.stop_requested:
            handle.stop_requested = True
            daemon.request_stop(signal.SIGTERM)
        code = await running  # a daemon's failure is raised here
    return code

"""The daemon: wires config, state, client and engine together; owns lifecycle and signals.

Signals only set flags and wake the loop; all work happens in the loop.
SIGHUP asks for a full resync at the next opportunity (now, if idle).
SIGTERM/SIGINT stop taking new batches, let requests in flight finish within
``sync.shutdown_deadline``, and exit 0; a second one exits at once (state is
transactional, so even that leaves it consistent).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time

import structlog

from syncd.cmdb.client import CmdbClient
from syncd.config import Settings
from syncd.control import ControlError, remove_pidfile, write_pidfile
from syncd.engine import CycleReport, Engine
from syncd.health import Health
from syncd.metrics import Metrics
from syncd.notify import SystemdNotifier
from syncd.ops import OpsServer
from syncd.progress import ProgressBar
from syncd.push import PushSources
from syncd.sections import FileSourceSettings
from syncd.sources.watch import watch_file
from syncd.state import StateStore

log = structlog.get_logger("syncd")


class Daemon:
    """One syncd process."""

    def __init__(
        self,
        settings: Settings,
        *,
        once: bool = False,
        max_cycles: int | None = None,
        progress: ProgressBar | None = None,
    ) -> None:
        self.settings = settings
        self.once = once
        self.max_cycles = 1 if once else max_cycles
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._resync = False
        self._signals = 0
        self.engine: Engine | None = None
        self.last_report: CycleReport | None = None
        self.reports: list[CycleReport] = []
        self.notifier = SystemdNotifier.from_env()
        self.metrics = Metrics(sync_interval=settings.sync.interval)
        # Ready means: the last cycle ended without a relation-level failure, and
        # recently: one slow cycle is tolerated, two missed ones are not.
        self.health = Health(max_age=2 * settings.sync.interval + 60)
        self.metrics.report_readiness(lambda: self.health.ready()[0])
        self.ops_url: str | None = None
        self.progress = progress

    # -- signals -------------------------------------------------------------

    def request_resync(self) -> None:
        """SIGHUP, ``syncd resync``, POST /resync: a full resync at the next turn."""
        log.info("resync_requested")
        self._resync = True
        self._wake.set()
        # systemd shows "reloading" until the resync cycle is done (READY=1 again).
        self.notifier.reloading()

    def request_cycle(self, reason: str) -> None:
        """Run the next cycle now (a watched source changed); not a resync."""
        log.info("cycle_requested", reason=reason)
        self._wake.set()

    def request_stop(self, signum: int | None = None) -> None:
        if self._stop.is_set():
            log.warning("second_stop_signal", signal=signum, action="exit now")
            os._exit(128 + (signum or signal.SIGTERM))
        log.info("stopping", signal=signum, deadline=self.settings.sync.shutdown_deadline)
        self._stop.set()
        self._wake.set()
        self.notifier.stopping()
        if self.engine is not None:
            self.engine.stop()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGHUP, self.request_resync)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, int(sig))

    def _remove_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped (or one cycle for ``once``); returns the exit status."""
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        store, warning = StateStore.open(self.settings.state.path)
        if warning:
            log.warning("state_rebuilt", path=str(self.settings.state.path), reason=warning)
        aux_stop = asyncio.Event()
        aux: list[asyncio.Task[None]] = [
            asyncio.create_task(self.health.heartbeat_loop(aux_stop)),
        ]
        if self.notifier.watchdog_interval() is not None:
            aux.append(asyncio.create_task(self.notifier.watchdog_loop(aux_stop)))
        if not self.once:
            for rel in self.settings.relations:
                src = rel.source
                if isinstance(src, FileSourceSettings) and src.watch:
                    reason = f"{rel.name}: {src.path} changed"
                    aux.append(
                        asyncio.create_task(
                            watch_file(
                                src.path,
                                functools.partial(self.request_cycle, reason),
                                src.watch_interval,
                                aux_stop,
                            )
                        )
                    )
        # Push sources (NetBox webhooks, watched commands): see syncd/push.py.
        push = PushSources(self.settings, self.request_cycle)
        if not self.once:
            aux.extend(push.start(aux_stop))
        ops: OpsServer | None = None
        pidfile = self.settings.ops.pidfile
        try:
            if self.settings.ops.enabled and not self.once:
                ops = OpsServer(
                    self.health,
                    self.metrics,
                    self.request_resync,
                    host=self.settings.ops.host,
                    port=self.settings.ops.port,
                    routes=push.routes(),
                )
                self.ops_url = await ops.start()
            if pidfile is not None:
                try:
                    write_pidfile(pidfile)
                except (ControlError, OSError) as exc:
                    log.warning("pidfile_not_written", path=str(pidfile), error=str(exc))
                    pidfile = None
            async with CmdbClient(self.settings.cmdb, observer=self.metrics) as client:
                self.engine = Engine(self.settings, client, store, observer=self.metrics)
                self.engine.on_progress = self.progress
                if self._stop.is_set():
                    self.engine.stop()
                log.info(
                    "started",
                    relations=[r.name for r in self.settings.relations],
                    state=str(self.settings.state.path),
                    gateway=self.settings.cmdb.gateway,
                    ops=self.ops_url,
                    pid=os.getpid(),
                )
                self.notifier.ready()
                self.notifier.status("started; first cycle running")
                return await self._loop(self.engine)
        finally:
            if self.progress is not None:
                self.progress.close()
            self.notifier.stopping()
            aux_stop.set()
            for task in aux:
                task.cancel()
            await asyncio.gather(*aux, return_exceptions=True)
            push.close()
            if ops is not None:
                await ops.stop()
            if pidfile is not None:
                remove_pidfile(pidfile)
            store.close()
            self._remove_signals(loop)
            self.notifier.close()
            log.info("stopped")

    async def _loop(self, engine: Engine) -> int:
        cycles = 0
        while not self._stop.is_set():
            resync, self._resync = self._resync, False
            self._wake.clear()
            report = await self._run_cycle(engine, resync)
            cycles += 1
            if resync:
                self.notifier.ready()
            if report is not None:
                self.last_report = report
                self.reports.append(report)
                summary = report.summary()
                self.health.cycle_finished(report.ok, summary)
                self.notifier.status(
                    "last cycle: {desired} desired, {created} created, {exists} existed, "
                    "{failed} failed, {held} held back, {relations_failed} relation(s) failed, "
                    "{duration}s".format(**summary)
                )
            if self._stop.is_set():
                break
            if self.max_cycles is not None and cycles >= self.max_cycles:
                break
            if self._resync:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.sync.interval)
        if self.once:
            return 0 if self.last_report is not None and self.last_report.converged else 1
        return 0

    async def _run_cycle(self, engine: Engine, resync: bool) -> CycleReport | None:
        task = asyncio.create_task(engine.cycle(resync=resync))
        stop_wait = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            # Stopping: requests in flight get the deadline, then are abandoned.
            deadline = self.settings.sync.shutdown_deadline
            started = time.monotonic()
            done, _ = await asyncio.wait({task}, timeout=deadline)
            if done:
                return task.result()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.warning(
                "shutdown_deadline_passed",
                deadline=deadline,
                waited=round(time.monotonic() - started, 3),
            )
            return None
        finally:
            stop_wait.cancel()

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
from collections import deque
from collections.abc import AsyncIterator

import structlog

from syncd.cmdb.client import CmdbClient
from syncd.config import Settings
from syncd.control import ControlError, remove_pidfile, write_pidfile
from syncd.health import Health
from syncd.metrics import Metrics
from syncd.notify import SystemdNotifier
from syncd.ops import OpsServer
from syncd.progress import ProgressBar
from syncd.push import PushSources
from syncd.reconcile import Reconciler
from syncd.report import CycleReport
from syncd.sections import FileSourceSettings
from syncd.sources.watch import watch_file
from syncd.state import StateLocked, StateStore
from syncd.watch import Watcher

log = structlog.get_logger("syncd")

REPORTS_KEPT = 16
EX_TEMPFAIL = 75
"""Exit status when the state file is held by another syncd (sysexits' EX_TEMPFAIL)."""


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
        self.engine: Reconciler | None = None
        self.last_report: CycleReport | None = None
        self.reports: deque[CycleReport] = deque(maxlen=REPORTS_KEPT)
        """The last few cycles' reports (a daemon runs for months: not all of them)."""
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
        """Run until stopped (or one cycle for ``once``); returns the exit status.

        Start-up enters every resource into one exit stack, so shutdown releases
        exactly what was acquired, in reverse order, whatever failed on the way.
        """
        try:
            async with contextlib.AsyncExitStack() as stack:
                engine = await self._startup(stack)
                return await self._loop(engine)
        except StateLocked as exc:
            log.error("state_locked", error=str(exc), holder=exc.holder)
            return EX_TEMPFAIL
        raise AssertionError("unreachable")  # pragma: no cover (mypy: the stack may swallow)

    async def _startup(self, stack: contextlib.AsyncExitStack) -> Reconciler:
        """Signals, state, helper tasks, ops server, pidfile, client: each undone by the stack."""
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        stack.callback(self._stopped, loop)
        store, warning = StateStore.open(self.settings.state.path, lock=True)
        stack.callback(store.close)
        if warning:
            log.warning("state_rebuilt", path=str(self.settings.state.path), reason=warning)
        push = PushSources(self.settings, self.request_cycle)
        await stack.enter_async_context(self._helpers(push))
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
            stack.push_async_callback(ops.stop)
        self._write_pidfile(stack)
        watching = self.settings.sync.watch and not self.once
        objects = {r.bk_obj_id for r in self.settings.relations} if watching else set()
        client = await stack.enter_async_context(
            CmdbClient(self.settings.cmdb, observer=self.metrics, watch_slots=len(objects))
        )
        stack.callback(self._stopping)
        self.engine = Reconciler(self.settings, client, store, observer=self.metrics)
        self.engine.apply.on_progress = self.progress
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
        if objects:
            # Before the first cycle: the watch's "from now" must precede the first list.
            watcher = Watcher(self.settings, self.engine, observer=self.metrics)
            self.health.watch = watcher.snapshot
            await stack.enter_async_context(watcher.running())
        return self.engine

    @contextlib.asynccontextmanager
    async def _helpers(self, push: PushSources) -> AsyncIterator[None]:
        """Heartbeat, watchdog, file watchers and push sources (NetBox webhooks, watched
        commands: see syncd/push.py): running inside, cancelled and reaped after."""
        helpers_stop = asyncio.Event()
        tasks = [asyncio.create_task(self.health.heartbeat_loop(helpers_stop))]
        if self.notifier.watchdog_interval() is not None:
            tasks.append(asyncio.create_task(self.notifier.watchdog_loop(helpers_stop)))
        if not self.once:
            for rel in self.settings.relations:
                src = rel.source
                if isinstance(src, FileSourceSettings) and src.watch:
                    wake = functools.partial(self.request_cycle, f"{rel.name}: {src.path} changed")
                    watcher = watch_file(src.path, wake, src.watch_interval, helpers_stop)
                    tasks.append(asyncio.create_task(watcher))
            tasks.extend(push.start(helpers_stop))
        try:
            yield
        finally:
            helpers_stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            push.close()

    def _write_pidfile(self, stack: contextlib.AsyncExitStack) -> None:
        pidfile = self.settings.ops.pidfile
        if pidfile is None:
            return
        try:
            write_pidfile(pidfile)
        except (ControlError, OSError) as exc:
            log.warning("pidfile_not_written", path=str(pidfile), error=str(exc))
            return
        stack.callback(remove_pidfile, pidfile)

    def _stopping(self) -> None:
        """First thing on the way out: the progress bar goes, systemd hears "stopping"."""
        if self.progress is not None:
            self.progress.close()
        self.notifier.stopping()

    def _stopped(self, loop: asyncio.AbstractEventLoop) -> None:
        """Last thing on the way out."""
        self._remove_signals(loop)
        self.notifier.stopping()
        self.notifier.close()
        log.info("stopped")

    async def _loop(self, engine: Reconciler) -> int:
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

    async def _run_cycle(self, engine: Reconciler, resync: bool) -> CycleReport | None:
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

"""The daemon: wires config, state, client and engine together; owns the lifecycle.

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
from collections.abc import Collection

import structlog

from syncd.cmdb.client import CmdbClient
from syncd.config.checks import unused_settings
from syncd.config.settings import Settings
from syncd.engine.change import Change, ChangeUncertain
from syncd.engine.reconcile import Reconciler
from syncd.engine.report import CycleReport
from syncd.informer.stream import WatchTimings
from syncd.informer.watch import Watcher
from syncd.runtime.background import background_tasks
from syncd.runtime.control import ControlError, remove_pidfile, write_pidfile
from syncd.runtime.health import Health
from syncd.runtime.metrics import Metrics
from syncd.runtime.notify import SystemdNotifier
from syncd.runtime.ops import OpsServer
from syncd.runtime.progress import ProgressBar
from syncd.runtime.push import PushSources
from syncd.runtime.signals import DaemonSignals
from syncd.runtime.stateopen import StateOpener
from syncd.runtime.webhooks import RESULTS
from syncd.state import StateLocked, StateStore

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
        watch_timings: WatchTimings | None = None,
    ) -> None:
        self.settings = settings
        self.watch_timings = watch_timings or WatchTimings()
        self.once = once
        self.max_cycles = 1 if once else max_cycles
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._resync = False
        self._lift_guards = False
        self._pending: set[str] = set()
        self._everything = False
        self.engine: Reconciler | None = None
        self._watcher: Watcher | None = None
        self._client: CmdbClient | None = None
        self._signals = DaemonSignals(settings.sync, self.request_stop, self.request_resync)
        self.last_report: CycleReport | None = None
        self.reports: deque[CycleReport] = deque(maxlen=REPORTS_KEPT)
        """The last few cycles' reports (a daemon runs for months: not all of them)."""
        self.notifier = SystemdNotifier.from_env()
        self.metrics = Metrics(sync_interval=settings.sync.interval)
        # Ready means: the last cycle ended without a relation-level failure, and
        # recently: one slow cycle is tolerated, two missed ones are not.
        self.health = Health(max_age=2 * settings.sync.interval + 60)
        self.metrics.report_readiness(lambda: self.health.ready()[0])
        self._state = StateOpener(settings, self.metrics)
        self.ops_url: str | None = None
        self.hooks_url: str | None = None
        self.progress = progress
        self._push: PushSources | None = None

    # -- requests: signals, commands, pushes -----------------------------------

    def request_resync(self, lift_guards: bool = True) -> None:
        """SIGHUP, ``syncd resync``, POST /resync: a full resync at the next turn. Only the
        operator's (SIGHUP, or the endpoint with the resync token) lifts prune guards."""
        log.info("resync_requested", lifts_guards=lift_guards)
        self._resync = True
        self._lift_guards = self._lift_guards or lift_guards
        self._wake.set()
        # systemd shows "reloading" until the resync cycle is done (READY=1 again).
        self.notifier.reloading()

    def request_cycle(self, reason: str, relations: Collection[str] | None = None) -> None:
        """Run a cycle now (a source pushed or a watched file changed), of ``relations``
        only when given; not a resync. Requests before the cycle starts coalesce."""
        scope = {} if relations is None else {"relations": sorted(relations)}
        log.info("cycle_requested", reason=reason, **scope)
        if relations is None:
            self._everything = True
        else:
            self._pending.update(relations)
        self._wake.set()

    def _take_scope(self, full: bool) -> set[str] | None:
        """The relations the next cycle runs: None for every one (the interval, SIGHUP, a
        request for all), else those pushes asked for since the last cycle began."""
        pending, everything = self._pending, self._everything or full
        self._pending, self._everything = set(), False
        return None if everything or not pending else pending

    async def _apply_change(self, name: str, change: Change) -> bool:
        """A pushed change, applied by the engine at once; False when only a full read of
        the relation can tell (no engine yet, no full read yet, a read or request failed)."""
        engine = self.engine
        rel = next((r for r in self.settings.relations if r.name == name), None)
        if engine is None or rel is None or self._stop.is_set():
            return False
        try:
            report = await engine.apply_change(rel, change)
        except ChangeUncertain as exc:
            log.info("change_needs_full_read", relation=name, reason=str(exc))
            return False
        return report.error is None

    def request_stop(self, signum: int | None = None) -> None:
        if self._stop.is_set():
            log.warning("second_stop_signal", signal=signum, action="exit now")
            os._exit(128 + (signum or signal.SIGTERM))
        self._signals.arm_exit_guard(signum)
        log.info("stopping", signal=signum, deadline=self.settings.sync.shutdown_deadline)
        self._stop.set()
        self._wake.set()
        self.notifier.stopping()
        if self.engine is not None:
            self.engine.stop()

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped (or one cycle for ``once``); returns the exit status.

        Start-up enters every resource into one exit stack, so shutdown releases
        exactly what was acquired, in reverse order, whatever failed on the way.
        """
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._startup(stack)
                return await self._loop(stack)
        except StateLocked as exc:
            log.error("state_locked", error=str(exc), holder=exc.holder)
            return EX_TEMPFAIL
        raise AssertionError("unreachable")  # pragma: no cover (mypy: the stack may swallow)

    async def _startup(self, stack: contextlib.AsyncExitStack) -> None:
        """Signals, state, helper tasks, ops server, pidfile, client: each undone by the stack.

        A state store that cannot be opened now (read-only, disk full, a newer schema) does
        not stop the start: every cycle fails with one line until it can be (see
        :meth:`_engine`); only another syncd holding it does (exit 75).
        """
        loop = asyncio.get_running_loop()
        self._signals.install(loop)
        stack.callback(self._stopped, loop)
        store = self._state.open(stack)
        push = self._push = PushSources(
            self.settings,
            self.request_cycle,
            self._apply_change,
            count_webhook=self.metrics.record_webhook,
            count_http=self.metrics.record_http_trouble,
        )
        if push.webhook is not None:
            self.metrics.webhook_results(RESULTS)
            self.health.push = push.not_ready
        await stack.enter_async_context(
            background_tasks(
                self.settings, self.health, self.notifier, push, self.request_cycle, once=self.once
            )
        )
        if self.settings.ops.enabled and not self.once:
            await self._start_ops(stack, push)
        if not self.once:
            self.hooks_url = await push.start_listener()
            stack.push_async_callback(push.stop_listener)
        self._write_pidfile(stack)
        watching = self.settings.sync.watch and not self.once
        objects = {r.bk_obj_id for r in self.settings.relations} if watching else set()
        client = await stack.enter_async_context(
            CmdbClient(self.settings.cmdb, observer=self.metrics, watch_slots=len(objects))
        )
        stack.callback(self._stopping)
        self._client = client
        if store is not None:
            self._make_engine(store)
        log.info(
            "started",
            relations=[r.name for r in self.settings.relations],
            state=str(self.settings.state.path),
            gateway=self.settings.cmdb.gateway,
            ops=self.ops_url,
            hooks=self.hooks_url,
            pid=os.getpid(),
        )
        for warning in unused_settings(self.settings):
            log.warning("config_unused", warning=warning)
        self.notifier.ready()
        self.notifier.status("started; first cycle running")

    async def _start_ops(self, stack: contextlib.AsyncExitStack, push: PushSources) -> None:
        """The ops server (health, metrics, resync, push routes), stopped by the stack."""
        token = self.settings.ops.resync_token
        ops = OpsServer(
            self.health,
            self.metrics,
            functools.partial(self.request_resync, lift_guards=False),
            host=self.settings.ops.host,
            port=self.settings.ops.port,
            routes=push.routes(),
            resync_token=token.get_secret_value() if token is not None else None,
            on_lift=self.request_resync,
        )
        self.ops_url = await ops.start()
        stack.push_async_callback(ops.stop)

    def _make_engine(self, store: StateStore) -> Reconciler:
        assert self._client is not None, "the client opens before the engine is made"
        self.engine = Reconciler(self.settings, self._client, store, observer=self.metrics)
        self.engine.apply.on_progress = self.progress
        if self._stop.is_set():
            self.engine.stop()
        return self.engine

    def _engine(self, stack: contextlib.AsyncExitStack) -> Reconciler | None:
        """The engine; the first turns after a failed open try the state store again."""
        if self.engine is None:
            store = self._state.open(stack)
            if store is not None:
                log.info("state_available", path=str(self.settings.state.path))
                self._make_engine(store)
        return self.engine

    async def _start_watch(self, stack: contextlib.AsyncExitStack, engine: Reconciler) -> None:
        """The CMDB watch (syncd.informer.watch), before the engine's first cycle: its "from now"
        must precede the first list. Undone by the stack before the client closes."""
        if not self.settings.sync.watch or self.once:
            return
        self._watcher = Watcher(
            self.settings, engine, observer=self.metrics, timings=self.watch_timings
        )
        self.health.watch = self._watcher.snapshot
        # Priming asks the CMDB where "now" is (up to the prime timeout when it is
        # unreachable): a stop signal meanwhile ends it at once.
        entering = asyncio.ensure_future(stack.enter_async_context(self._watcher.running()))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({entering, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not entering.done():
                entering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await entering
        if not entering.cancelled():
            entering.result()  # a failure to start the watch is raised, as before

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
        self._signals.remove(loop)
        self.notifier.stopping()
        self.notifier.close()
        log.info("stopped")

    async def _loop(self, stack: contextlib.AsyncExitStack) -> int:
        cycles = 0
        full_due = 0.0  # when the next cycle runs every relation: an interval after the last
        while not self._stop.is_set():
            resync, self._resync = self._resync, False
            lift, self._lift_guards = self._lift_guards, False
            only = self._take_scope(resync or time.monotonic() >= full_due)
            self._wake.clear()
            engine = self._engine(stack)
            if engine is not None and self._watcher is None:
                await self._start_watch(stack, engine)
                if self._stop.is_set():
                    break  # stopped during start-up: no cycle begins after "stopping"
            started = time.monotonic()
            if engine is None:
                report: CycleReport | None = self._state.unavailable_cycle(
                    stopped=self._stop.is_set()
                )
            else:
                report = await self._run_cycle(engine, resync, only, lift)
            if report is not None and self._push is not None:
                self._push.cycle_finished(report, started)
            if only is None:
                full_due = time.monotonic() + self.settings.sync.interval
            cycles += 1
            if resync:
                self.notifier.ready()
            if report is not None:
                self.reports.append(report)
                if only is not None and self.last_report is not None:
                    report = self.last_report.updated_by(report)
                self.last_report = report
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
                await asyncio.wait_for(self._wake.wait(), max(0.0, full_due - time.monotonic()))
        if self.once:
            return 0 if self.last_report is not None and self.last_report.converged else 1
        return 0

    async def _run_cycle(
        self,
        engine: Reconciler,
        resync: bool,
        only: set[str] | None = None,
        lift_guards: bool = False,
    ) -> CycleReport | None:
        task = asyncio.create_task(
            engine.cycle(resync=resync, only=only, lift_guards=lift_guards and resync)
        )
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

"""A supervised streaming command whose stdout is a stream of change notifications.

Used by ``watch = true`` on the command source (``lldpcli -f json watch``). A
notification carries nothing the daemon relies on: it only asks for a cycle, and the
cycle reads the full table again, so a lost or partial notification costs a delay,
never a wrong result. For the same reason a restart counts as a notification: changes
may have happened while nothing was watching.

Notifications are delivered at a bounded rate (a burst of ``burst``, then ``rate`` a
second): a child printing without pause (lldpd hears LLDP frames, so a neighbour can
make it) costs a few deliveries and log lines a second, never one per line. What is held
back is coalesced into the next delivery (the latest text) and counted in a
``stream_notifications_coalesced`` line every ``COALESCED_LOG_EVERY`` seconds at most.

The process runs in its own session (process group), like the command source's. When
it exits it is restarted after a pause that doubles up to a cap and starts again from
the base once a run lasted ``stable_after`` seconds. On shutdown the group gets
SIGTERM, then SIGKILL after ``term_grace`` seconds, and is reaped: nothing outlives
the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from syncd.sources.base import redact
from syncd.sources.childio import exited, finish, read_tail
from syncd.sources.settings import Framing

log = structlog.get_logger("syncd.sources")

STDERR_TAIL = 2000
COALESCED_LOG_EVERY = 10.0
YIELD_EVERY = 256
"""The pump gives the loop a turn after this many buffered lines."""


class NotificationSplitter:
    """Cut stdout into notifications. Pure.

    ``lines``: each non-blank line is one (JSON Lines, plain text).
    ``paragraphs``: each run of non-blank lines ended by a blank line is one; lldpcli's
    json writer prints every event as an indented document followed by a blank line.
    """

    def __init__(self, framing: Framing, max_size: int = 1024 * 1024) -> None:
        self.framing = framing
        self.max_size = max_size
        self._buf: list[str] = []
        self._size = 0

    def feed(self, line: str) -> list[str]:
        """Completed notifications after one more line (without its newline)."""
        blank = not line.strip()
        if self.framing == "lines":
            return [] if blank else [line]
        if blank:
            return self.flush()
        self._size += len(line)
        if self._size > self.max_size:  # runaway: keep it a signal, drop the text
            self._buf, self._size = ["(oversized)"], len("(oversized)")
        else:
            self._buf.append(line)
        return []

    def flush(self) -> list[str]:
        """What is pending (at a blank line, or at end of stream)."""
        if not self._buf:
            return []
        text, self._buf, self._size = "\n".join(self._buf), [], 0
        return [text]


@dataclass
class StreamSpec:
    """What to run and how to supervise it."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None
    framing: Framing = "lines"
    secrets: list[str] = field(default_factory=list)
    """Redacted from anything logged (stderr tails)."""
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    stable_after: float = 30.0
    term_grace: float = 2.0
    max_notification: int = 1024 * 1024
    burst: int = 20
    rate: float = 2.0
    """Notifications delivered: ``burst`` at once, then ``rate`` a second; the rest coalesce."""


class NotificationGate:
    """A token bucket in front of the callback: deliver now, or hold the latest text for
    one trailing delivery once a token is back. Pure but for the clock and the timer."""

    def __init__(
        self,
        deliver: Callable[[str], None],
        *,
        burst: int,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deliver = deliver
        self.burst = float(burst)
        self.rate = rate
        self.clock = clock
        self.tokens = float(burst)
        self.coalesced = 0
        """Notifications folded into a later one (or dropped at close), never delivered."""
        self._stamp = clock()
        self._held: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, text: str) -> bool:
        """Deliver ``text`` now (True) or hold it; held text goes out as soon as allowed."""
        self._refill()
        if self._held is None and self.tokens >= 1.0:
            self.tokens -= 1.0
            self.deliver(text)
            return True
        if self._held is not None:
            self.coalesced += 1  # the text held so far is folded into this one
        self._held = text
        if self._timer is None:
            wait = max(0.0, (1.0 - self.tokens) / self.rate)
            self._timer = asyncio.get_running_loop().call_later(wait, self._release)
        return False

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def _release(self) -> None:
        self._timer = None
        text, self._held = self._held, None
        if text is not None:
            self._refill()
            self.tokens = max(0.0, self.tokens - 1.0)
            self.deliver(text)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held is not None:
            self.coalesced += 1  # never delivered: stopping
            self._held = None


class StreamSupervisor:
    """Runs ``spec.argv`` until ``stop`` is set; calls ``on_notification(text)`` per change."""

    def __init__(
        self,
        spec: StreamSpec,
        *,
        name: str,
        on_notification: Callable[[str], None],
    ) -> None:
        self.spec = spec
        self.name = name
        self.program = os.path.basename(spec.argv[0])
        self.on_notification = on_notification
        self.starts = 0
        self.notifications = 0
        self.pid: int | None = None
        self.exit_codes: list[int | None] = []
        self.delivered = 0
        self._gate: NotificationGate | None = None
        self._coalesced_logged = 0
        self._coalesced_at = -COALESCED_LOG_EVERY

    async def run(self, stop: asyncio.Event) -> None:
        """Supervise until ``stop``; returns with no process left behind."""
        self._gate = NotificationGate(self._deliver, burst=self.spec.burst, rate=self.spec.rate)
        try:
            await self._supervise(stop)
        finally:
            self._gate.close()
            self._log_coalesced(force=True)

    async def _supervise(self, stop: asyncio.Event) -> None:
        delay = self.spec.backoff_base
        while not stop.is_set():
            started = time.monotonic()
            if self.starts:
                self._notify(f"{self.program} restarted: changes may have been missed")
            code = await self._run_once(stop)
            if stop.is_set():
                return
            self.exit_codes.append(code)
            if time.monotonic() - started >= self.spec.stable_after:
                delay = self.spec.backoff_base
            log.warning(
                "stream_exited",
                relation=self.name,
                program=self.program,
                status=_describe(code),
                restart_in=round(delay, 3),
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(self.spec.backoff_cap, delay * 2)

    def _notify(self, text: str) -> None:
        self.notifications += 1
        if self._gate is None:
            self._deliver(text)
        elif not self._gate.offer(text):
            self._log_coalesced()

    def _deliver(self, text: str) -> None:
        self.delivered += 1
        try:
            self.on_notification(text)
        except Exception as exc:  # a watcher must outlive its callback's bugs
            log.error("stream_callback_failed", relation=self.name, error=repr(exc))

    def _log_coalesced(self, *, force: bool = False) -> None:
        """How many notifications were folded into others: one line per interval at most."""
        if self._gate is None:
            return
        now = time.monotonic()
        new = self._gate.coalesced - self._coalesced_logged
        if new <= 0 or (not force and now - self._coalesced_at < COALESCED_LOG_EVERY):
            return
        self._coalesced_logged, self._coalesced_at = self._gate.coalesced, now
        log.warning(
            "stream_notifications_coalesced",
            relation=self.name,
            program=self.program,
            count=new,
            total=self._gate.coalesced,
            delivered=self.delivered,
        )

    async def _run_once(self, stop: asyncio.Event) -> int | None:
        """One run: its exit status, or None if it could not start or was stopped."""
        s = self.spec
        self.starts += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *s.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=s.env,
                cwd=s.cwd,
                start_new_session=True,
                limit=s.max_notification,
            )
        except OSError as exc:
            log.error(
                "stream_not_started",
                relation=self.name,
                program=self.program,
                error=exc.strerror or type(exc).__name__,
            )
            return None
        self.pid = proc.pid
        log.info("stream_started", relation=self.name, program=self.program, pid=proc.pid)
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.create_task(read_tail(proc.stderr, STDERR_TAIL))
        pump = asyncio.create_task(self._pump(proc.stdout))
        stopped = asyncio.create_task(stop.wait())
        exit_ = asyncio.create_task(exited(proc))
        try:
            # Judged by its exit, not by its pipe: a grandchild may hold stdout open
            # after the program itself is gone.
            await asyncio.wait({pump, stopped, exit_}, return_when=asyncio.FIRST_COMPLETED)
            if not stop.is_set():
                # stdout closed: the exit should follow; exited: what is still buffered
                # is read (briefly); then the group is ended either way.
                await asyncio.wait(
                    {pump if exit_.done() else exit_, stopped},
                    timeout=s.term_grace,
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            pump.cancel()
            stopped.cancel()
            exit_.cancel()
            await self._terminate(proc)
            # What is left in stdout (a flood paused its reading) is read to the end, so
            # the pipe closes and the transport with it.
            await finish(asyncio.ensure_future(read_tail(proc.stdout, 1)))
            tail = await finish(stderr_task)
        if tail and not stop.is_set():
            text = tail.decode("utf-8", "replace").strip()
            log.warning(
                "stream_stderr",
                relation=self.name,
                program=self.program,
                stderr=redact(text, s.secrets),
            )
        return None if stop.is_set() else proc.returncode

    async def _pump(self, stdout: asyncio.StreamReader) -> None:
        splitter = NotificationSplitter(self.spec.framing, self.spec.max_notification)
        lines = 0
        while True:
            lines += 1
            if lines % YIELD_EVERY == 0:  # a buffered flood never holds the loop
                await asyncio.sleep(0)
            try:
                raw = await stdout.readline()
            except ValueError:  # one line longer than the limit: still a change
                self._notify("(oversized line)")
                continue
            if not raw:
                break
            for text in splitter.feed(raw.decode("utf-8", "replace").rstrip("\r\n")):
                self._notify(text)
        for text in splitter.flush():
            self._notify(text)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the group, SIGKILL it after the grace, reap the leader."""
        if proc.returncode is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                async with asyncio.timeout(self.spec.term_grace):
                    await proc.wait()
            except TimeoutError:
                log.warning(
                    "stream_killed",
                    relation=self.name,
                    program=self.program,
                    grace=self.spec.term_grace,
                )
        _signal_group(proc, signal.SIGKILL)  # the leader's children too
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()


def _describe(code: int | None) -> str:
    if code is None:
        return "could not start"
    return f"killed by signal {-code}" if code < 0 else f"exited with status {code}"


def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

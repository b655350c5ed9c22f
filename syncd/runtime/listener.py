"""A hardened aiohttp listener: bounded connections, read deadlines, quiet on bad HTTP.

Shared by every HTTP endpoint the daemon opens (the ops server, webhook listeners),
because each is reachable by any local user (or, in a pod, the network) and the
daemon's own file handles (sources, the state file, CMDB connections) must never be
starved by it:

- at most ``max_connections`` at once, capped well below the process's open-file limit
  (read at start). At the cap a newcomer takes the place of the oldest connection
  that has no request in progress (a stalled client, not a probe being answered); when
  every connection is busy the newcomer is closed at once;
- a connection must complete a request's headers within ``header_timeout`` seconds of
  connecting or of its last response, and a request (reading its body included) must
  finish within ``request_timeout``: idle and slow clients are dropped in seconds;
- malformed HTTP (an oversized header, a bad ``Content-Length``, a bad chunk) is
  answered by aiohttp (400/431) and becomes one counted JSON line at a bounded rate,
  never a traceback on stderr. So do refused and dropped connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger("syncd.listener")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ListenerLimits:
    """The bounds of one listener (defaults suit probes, scrapes and webhooks)."""

    max_connections: int = 128
    header_timeout: float = 5.0
    request_timeout: float = 15.0
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 64
    read_bufsize: int = 16 * 1024
    """What a connection may hold unread: an idle or slow client's share of memory."""
    linger: float = 0.25
    """Seconds a body left unread (a refused request) is still read and dropped, so an
    honest client gets its answer, before the connection closes (aiohttp's default: 10)."""
    fd_share: int = 8
    """The listener takes at most 1/fd_share of the open-file limit (1024 -> 128)."""
    log_interval: float = 10.0
    """At most one line per kind of trouble per this many seconds (the rest counted)."""

    def connection_cap(self, nofile: int | None = None) -> int:
        """``max_connections``, lowered to a share of RLIMIT_NOFILE's soft limit."""
        if nofile is None:
            nofile = open_file_limit()
        return max(4, min(self.max_connections, nofile // self.fd_share))


def open_file_limit() -> int:
    """The soft RLIMIT_NOFILE (unlimited reads as a large number; unreadable as 1024)."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 1024
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


class RateLimitedLine:
    """One log line per kind at most every ``interval`` seconds; the rest are counted,
    and the count of those held back is written by the next line (or a flush timer)."""

    def __init__(
        self,
        name: str,
        interval: float,
        clock: Callable[[], float],
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.clock = clock
        self.count = count
        """Told of every hit (listener, kind): the metrics count them all."""
        self.total: Counter[str] = Counter()
        self._held: Counter[str] = Counter()
        self._last: dict[str, float] = {}
        self._last_fields: dict[str, dict[str, Any]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def hit(self, event: str, **fields: Any) -> None:
        self.total[event] += 1
        if self.count is not None:
            self.count(self.name, event.removeprefix("http_"))
        self._held[event] += 1
        self._last_fields[event] = fields
        now = self.clock()
        due = self._last.get(event, -float("inf")) + self.interval
        if now >= due:
            self._emit(event)
        elif event not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[event] = loop.call_later(due - now, self._emit, event)

    def _emit(self, event: str) -> None:
        timer = self._timers.pop(event, None)
        if timer is not None:
            timer.cancel()
        count = self._held.pop(event, 0)
        if not count:
            return
        self._last[event] = self.clock()
        log.warning(
            event,
            listener=self.name,
            count=count,
            total=self.total[event],
            **self._last_fields.pop(event, {}),
        )

    def close(self) -> None:
        for event in list(self._timers):
            self._emit(event)


class _CountingHandler(logging.Handler):
    """aiohttp's server log records (errors parsing or handling a request) as counts."""

    def __init__(self, lines: RateLimitedLine) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None or record.exc_info[1] is None:
            return  # aiohttp's debug chatter (premature disconnects and the like)
        exc = record.exc_info[1]
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:200]
        with contextlib.suppress(RuntimeError):  # no running loop: never in aiohttp's
            self.lines.hit("http_request_rejected", reason=reason)


def quiet_logger(name: str, lines: RateLimitedLine) -> logging.Logger:
    """A logger of its own for one listener's aiohttp handlers: nothing reaches stderr."""
    logger = logging.Logger(f"syncd.http.{name}", logging.DEBUG)
    logger.propagate = False
    logger.addHandler(_CountingHandler(lines))
    return logger


class _Guard(asyncio.Protocol):
    """One connection: admitted or refused, its deadline, and aiohttp's handler inside."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.inner: RequestHandler | None = None
        self.transport: asyncio.Transport | None = None
        self.busy = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.listener._admit(self):
            transport.abort()
            return
        self.inner = self.listener._server()
        self.listener._by_handler[self.inner] = self
        self.arm(self.listener.limits.header_timeout, "header_timeout")
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            self.inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.inner is not None:
            self.listener._left(self)
            self.inner.connection_lost(exc)
            self.inner = None

    def arm(self, seconds: float, why: str) -> None:
        self.disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self.drop, why)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def drop(self, why: str) -> None:
        self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.listener.lines.hit("http_connection_dropped", reason=why)
            self.listener._left(self)  # its place is free now, not a loop turn later
            self.transport.abort()


class Listener:
    """An aiohttp app served on (host, port) within :class:`ListenerLimits`."""

    def __init__(
        self,
        app: web.Application,
        *,
        name: str,
        host: str,
        port: int,
        limits: ListenerLimits | None = None,
        nofile: int | None = None,
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        self.limits = limits or ListenerLimits()
        self.name = name
        self.host = host
        self.port = port
        self.nofile = open_file_limit() if nofile is None else nofile
        self.cap = self.limits.connection_cap(self.nofile)
        self.lines = RateLimitedLine(name, self.limits.log_interval, time.monotonic, count)
        self._idle: OrderedDict[_Guard, None] = OrderedDict()
        self._open: set[_Guard] = set()
        self._by_handler: dict[RequestHandler, _Guard] = {}
        app.middlewares.append(self._deadline)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            logger=quiet_logger(name, self.lines),
            keepalive_timeout=self.limits.header_timeout,
            lingering_time=self.limits.linger,
            read_bufsize=self.limits.read_bufsize,
            max_line_size=self.limits.max_line_size,
            max_field_size=self.limits.max_field_size,
            max_headers=self.limits.max_headers,
        )
        self._tcp: asyncio.Server | None = None

    @property
    def connections(self) -> int:
        return len(self._open)

    async def start(self) -> tuple[str, int]:
        """Listen; the bound (host, port). OSError when the address cannot be had."""
        await self._runner.setup()
        try:
            loop = asyncio.get_running_loop()
            self._tcp = await loop.create_server(
                lambda: _Guard(self), self.host, self.port, backlog=min(128, self.cap)
            )
        except BaseException:
            await self._runner.cleanup()
            raise
        host, port = self._tcp.sockets[0].getsockname()[:2]
        self.port = int(port)
        return str(host), self.port

    async def stop(self) -> None:
        if self._tcp is not None:
            tcp, self._tcp = self._tcp, None
            tcp.close()
            for guard in list(self._open):
                guard.disarm()
            await self._runner.cleanup()
            self.lines.close()

    def _server(self) -> RequestHandler:
        server = self._runner.server
        assert server is not None, "the runner is set up before the socket listens"
        return server()

    def _admit(self, guard: _Guard) -> bool:
        if len(self._open) >= self.cap:
            if not self._idle:
                self.lines.hit("http_connection_refused", limit=self.cap, reason="all busy")
                return False
            oldest, _ = self._idle.popitem(last=False)
            oldest.drop("evicted at the connection limit")
        self._open.add(guard)
        self._idle[guard] = None
        return True

    def _left(self, guard: _Guard) -> None:
        self._open.discard(guard)
        self._idle.pop(guard, None)
        if guard.inner is not None:
            self._by_handler.pop(guard.inner, None)

    def _guard_of(self, request: web.Request) -> _Guard | None:
        handler = request.protocol
        return self._by_handler.get(handler) if isinstance(handler, RequestHandler) else None

    @web.middleware
    async def _deadline(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A request in progress is not idle; it must finish within request_timeout."""
        guard = self._guard_of(request)
        if guard is None:  # pragma: no cover (every request comes through a guard)
            return await handler(request)
        guard.busy += 1
        guard.disarm()
        self._idle.pop(guard, None)
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                return await handler(request)
        except TimeoutError:
            guard.drop("request_timeout")
            raise web.HTTPRequestTimeout() from None
        finally:
            guard.busy -= 1
            if not guard.busy and guard in self._open:
                self._idle[guard] = None
                guard.arm(self.limits.header_timeout, "header_timeout")

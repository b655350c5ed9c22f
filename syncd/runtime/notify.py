"""sd_notify(3) without libsystemd: tell systemd we are ready, alive, reloading, stopping.

The protocol is one datagram per message on the AF_UNIX socket named by
``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket), each line an
``ASSIGNMENT=value``. Outside systemd the variable is unset and every call is a
no-op, so the daemon calls these unconditionally. A failed send must never take
the daemon down: it is logged once and otherwise ignored, because systemd
itself treats a missing notification as the signal (start timeout, watchdog).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("syncd.notify")

_MAX_STATUS = 1024
"""STATUS= is shown by ``systemctl status``; a short line is all it can display."""


class SystemdNotifier:
    """Sends sd_notify messages to one socket; cheap to call, never raises."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
    ) -> None:
        self.address = address or None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID; unset means no-op."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET") or None,
            watchdog_usec=_positive_int(env.get("WATCHDOG_USEC")),
            watchdog_pid=_positive_int(env.get("WATCHDOG_PID")),
        )

    @property
    def enabled(self) -> bool:
        """True when a notification socket was given (we run under systemd)."""
        return self.address is not None

    # -- messages -------------------------------------------------------------

    def ready(self) -> bool:
        """Startup (or a reload) is complete: systemd moves the unit to 'active'."""
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        """One line for ``systemctl status``; newlines would end the assignment."""
        line = " ".join(text.split())[:_MAX_STATUS]
        return self.notify(f"STATUS={line}")

    def reloading(self) -> bool:
        """A reload (resync) started; READY=1 ends it. MONOTONIC_USEC is required by systemd."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown began: systemd shows 'deactivating' instead of guessing."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Keep-alive for WatchdogSec=; sent from the event loop so a stuck loop stops it."""
        return self.notify("WATCHDOG=1")

    def notify(self, message: str) -> bool:
        """Send one raw message; True if it was handed to the socket."""
        if self.address is None:
            return False
        try:
            sock = self._socket()
            sock.sendto(message.encode("utf-8"), _sockaddr(self.address))
        except (OSError, ValueError) as exc:
            self._warn(exc)
            return False
        return True

    # -- watchdog -------------------------------------------------------------

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WatchdogSec=), or None when not asked.

        WATCHDOG_PID names the process the watchdog is meant for; a child that
        inherited the environment must not ping on its parent's behalf.
        """
        if self._watchdog_usec is None or self.address is None:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 2 / 1_000_000

    async def watchdog_loop(self, stop: asyncio.Event) -> None:
        """Ping until ``stop`` is set; returns at once when no watchdog is configured."""
        interval = self.watchdog_interval()
        if interval is None:
            return
        while not stop.is_set():
            self.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def close(self) -> None:
        """Release the socket; later calls reopen it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- internals ------------------------------------------------------------

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the event loop: if systemd's queue is full the ping is dropped.
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "sd_notify_failed",
                socket=self.address,
                error=f"{type(exc).__name__}: {exc}",
                note="further failures are not logged",
            )


def _sockaddr(address: str) -> str | bytes:
    """'@name' is Linux's abstract namespace: a leading NUL byte instead of '@'."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode("utf-8")
    if address.startswith("/"):
        return address
    raise ValueError(f"unsupported NOTIFY_SOCKET address {address!r} (need /path or @name)")


def _positive_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number > 0 else None

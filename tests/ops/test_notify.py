"""sd_notify against a real AF_UNIX datagram socket, by path and in the abstract namespace."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opstools import bind_notify_socket

from syncd.runtime.notify import SystemdNotifier


class Receiver:
    """What systemd does: a bound SOCK_DGRAM socket; one datagram per message."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def recv(self, timeout: float = 2.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode("utf-8")

    def drain(self, timeout: float = 0.05) -> list[str]:
        out: list[str] = []
        while True:
            try:
                out.append(self.recv(timeout))
            except TimeoutError:
                return out


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    sock, address = bind_notify_socket(request.param, tmp_path)
    try:
        yield Receiver(sock, address)
    finally:
        sock.close()


def test_messages_arrive_as_datagrams(receiver: Receiver) -> None:
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": receiver.address})
    assert n.enabled
    assert n.ready()
    assert receiver.recv() == "READY=1"
    assert n.status("cycle ok: desired=3 known=3\nfailed=0")
    assert receiver.recv() == "STATUS=cycle ok: desired=3 known=3 failed=0"
    assert n.stopping()
    assert receiver.recv() == "STOPPING=1"
    assert n.watchdog()
    assert receiver.recv() == "WATCHDOG=1"


def test_reloading_carries_monotonic_usec(receiver: Receiver) -> None:
    n = SystemdNotifier(receiver.address)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    lines = receiver.recv().split("\n")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_status_is_one_bounded_line(receiver: Receiver) -> None:
    n = SystemdNotifier(receiver.address)
    n.status("x" * 5000)
    msg = receiver.recv()
    assert "\n" not in msg
    assert len(msg) <= len("STATUS=") + 1024


def test_unset_socket_is_a_noop() -> None:
    n = SystemdNotifier.from_env({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog_interval() is None


def test_send_failure_never_raises_and_logs_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = SystemdNotifier(str(tmp_path / "nobody-listens.sock"))
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.stopping() is False
    out = capsys.readouterr()
    assert (out.out + out.err).count("sd_notify_failed") == 1


def test_unsupported_address_never_raises() -> None:
    n = SystemdNotifier("vsock:2:1234")
    assert n.ready() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "self"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # meant for another pid
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    env = {"NOTIFY_SOCKET": "/run/x.sock", **env}
    if env.get("WATCHDOG_PID") == "self":
        env["WATCHDOG_PID"] = str(os.getpid())
    assert SystemdNotifier.from_env(env).watchdog_interval() == expected


async def test_watchdog_loop_pings_until_stopped(receiver: Receiver) -> None:
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "100000"})
    stop = asyncio.Event()
    task = asyncio.create_task(n.watchdog_loop(stop))
    await asyncio.sleep(0.32)  # pings every 50 ms
    stop.set()
    await asyncio.wait_for(task, 1)
    pings = receiver.drain()
    assert len(pings) >= 4
    assert set(pings) == {"WATCHDOG=1"}


async def test_watchdog_loop_returns_without_watchdog() -> None:
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": "/run/x.sock"})
    await asyncio.wait_for(n.watchdog_loop(asyncio.Event()), 1)

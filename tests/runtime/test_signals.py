"""DaemonSignals gives the stop signals back when it is removed, unless a stop was
signalled: then a late second signal must still exit with 128 + signum, never by the
default action (death by signal, a different status for systemd and for the tests)."""

from __future__ import annotations

import asyncio
import signal

from syncd.config.settings import SyncSettings
from syncd.runtime.signals import DaemonSignals


def _signals() -> DaemonSignals:
    return DaemonSignals(SyncSettings(), on_stop=lambda _s: None, on_resync=lambda: None)


def test_remove_restores_the_handlers_it_replaced() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    loop = asyncio.new_event_loop()
    try:
        daemon_signals = _signals()
        daemon_signals.install(loop)
        assert signal.getsignal(signal.SIGTERM) == daemon_signals._on_stop_signal
        daemon_signals.remove(loop)
    finally:
        loop.close()
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_after_a_stop_signal_the_handler_stays_for_the_second_one() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    loop = asyncio.new_event_loop()
    daemon_signals = _signals()
    try:
        daemon_signals.install(loop)
        daemon_signals._stop_signalled = True  # as the first SIGTERM leaves it
        daemon_signals.remove(loop)
        assert signal.getsignal(signal.SIGTERM) == daemon_signals._on_stop_signal
        assert signal.getsignal(signal.SIGINT) == daemon_signals._on_stop_signal
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        loop.close()

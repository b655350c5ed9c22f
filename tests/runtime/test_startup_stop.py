"""SIGTERM during start-up, with the CMDB unreachable (it accepts connections and never
answers): the daemon exits promptly and no cycle begins after `stopping`."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Proc, write_config, write_csv

pytestmark = pytest.mark.slow

PROMPT = 3.0
"""Far below the watch's 10 s wait for the CMDB at start-up, the old exit time."""


@pytest.fixture
def silent_cmdb() -> Iterator[str]:
    """A loopback port that completes TCP handshakes and never answers a request."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_sigterm_during_start_up_exits_promptly_and_starts_no_cycle(
    tmp_path: Path, procs: list[Proc], silent_cmdb: str
) -> None:
    cfg = write_config(
        tmp_path,
        silent_cmdb,
        write_csv(tmp_path / "t.csv", [(1, 1001)]),
        interval=3600,
        cmdb_extra="timeout = 30",
    )
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    daemon.wait_for(lambda l: l.get("event") == "started")
    time.sleep(0.5)  # the watch is asking the silent CMDB where "now" is
    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert time.monotonic() - began < PROMPT
    events = [line.get("event") for line in daemon.lines]
    after = events[events.index("stopping") :]
    assert "cycle" not in after and "relation_failed" not in after, after
    assert after[-1] == "stopped", after

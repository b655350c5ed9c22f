"""Children judged by their exit, not their pipe, and a flood of notifications braked:
real child processes (a wrapper leaving a grandchild on stdout, a program printing
without pause)."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncd.sources.base import SourceError
from syncd.sources.command import CommandSource
from syncd.sources.settings import CommandSourceSettings
from syncd.sources.stream import NotificationGate, StreamSpec, StreamSupervisor


def _script(tmp_path: Path, body: str, name: str = "wrapper.py") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return [sys.executable, str(path)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def _until(pred: Callable[[], bool], limit: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def _holder(pidfile: Path) -> str:
    """Python that starts a grandchild sharing stdout, writing its pid to ``pidfile``."""
    return f"""
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
    """


# -- the watch stream ------------------------------------------------------------------


async def test_a_wrapper_exiting_while_a_grandchild_holds_stdout_is_restarted(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    argv = _script(
        tmp_path,
        _holder(pidfile)
        + """
        print('{"lldp-added": {}}', flush=True)
        sys.exit(4)
        """,
    )
    seen: list[str] = []
    spec = StreamSpec(argv=argv, env=dict(os.environ), backoff_base=0.05, term_grace=0.5)
    sup = StreamSupervisor(spec, name="leaf", on_notification=seen.append)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        await _until(lambda: sup.starts >= 2 and bool(sup.exit_codes))
        first_grandchild = int(pidfile.read_text())
        await _until(lambda: not _alive(first_grandchild))  # the group went with it
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await task
    assert sup.exit_codes[0] == 4
    assert '{"lldp-added": {}}' in seen


async def test_a_flood_of_notifications_is_coalesced_and_logged_at_a_bounded_rate(
    tmp_path: Path,
) -> None:
    argv = _script(
        tmp_path,
        """
        import sys
        block = "{}\\n" * 4096
        while True:
            sys.stdout.write(block)
        """,
    )
    seen: list[str] = []
    spec = StreamSpec(argv=argv, env=dict(os.environ), burst=5, rate=2.0)
    sup = StreamSupervisor(spec, name="leaf", on_notification=seen.append)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(sup.run(stop))
        await _until(lambda: sup.notifications > 20_000)
        await asyncio.sleep(1.0)
        stop.set()
        async with asyncio.timeout(20):
            await task
    # Every line was read (the child never blocks), few were delivered.
    assert sup.notifications > 20_000
    assert len(seen) == sup.delivered
    assert 5 <= sup.delivered <= 5 + 2 * 30  # burst + rate x (far more than the test took)
    coalesced = [line for line in logs if line["event"] == "stream_notifications_coalesced"]
    assert 1 <= len(coalesced) <= 4
    assert coalesced[-1]["total"] == sup.notifications - sup.delivered
    assert len(logs) < 20


async def test_held_back_notifications_are_delivered_once_the_burst_is_over() -> None:
    delivered: list[str] = []
    gate = NotificationGate(delivered.append, burst=2, rate=20.0)
    for n in range(100):
        gate.offer(str(n))
    assert delivered == ["0", "1"] and gate.coalesced == 97
    await _until(lambda: len(delivered) == 3, limit=5)
    assert delivered[-1] == "99"  # the latest text stands for all held back
    await asyncio.sleep(0.2)
    assert len(delivered) == 3
    gate.close()


# -- the command source ----------------------------------------------------------------


def _command(argv: list[str], **kw: object) -> CommandSource:
    settings = CommandSourceSettings.model_validate(
        {
            "type": "command",
            "argv": argv,
            "format": "jsonl",
            "source_field": "source",
            "target_field": "target",
            **kw,
        }
    )
    return CommandSource(settings, name="switch-host")


async def test_a_command_that_exits_while_a_helper_holds_stdout_is_read_not_timed_out(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "helper.pid"
    argv = _script(
        tmp_path,
        _holder(pidfile)
        + """
        for n in range(3):
            print('{"source": "sw-%d", "target": "h-%d"}' % (n, n))
        sys.stdout.flush()
        """,
    )
    src = _command(argv, timeout=5)
    loop = asyncio.get_running_loop()
    began = loop.time()
    facts = [f async for part in src.facts() for f in part]
    assert facts == [("sw-0", "h-0", 1), ("sw-1", "h-1", 2), ("sw-2", "h-2", 3)]
    assert loop.time() - began < 5  # done at its exit, not at the timeout
    helper = int(pidfile.read_text())
    await _until(lambda: not _alive(helper))  # nothing of the run is left behind


async def test_a_command_failure_names_the_source_and_the_relation(tmp_path: Path) -> None:
    argv = _script(tmp_path, "import time; time.sleep(30)", name="neighbours.py")
    with pytest.raises(SourceError) as err:
        await _command(argv, timeout=0.3).run()
    text = str(err.value)
    assert f"command:{os.path.basename(sys.executable)}" in text
    assert "relation 'switch-host'" in text and "timed out after 0.3s" in text

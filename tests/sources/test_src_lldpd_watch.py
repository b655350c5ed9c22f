"""lldpd watch (a supervised streaming command) and local_side, with real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError
from src_helpers import HERE, read_all
from structlog.testing import capture_logs

from syncd.sources.command import CommandSource
from syncd.sources.lldpd import LldpdFormatError, orient, watch_event
from syncd.sources.settings import CommandSourceSettings
from syncd.sources.stream import NotificationSplitter, StreamSpec, StreamSupervisor

LLDPD = HERE / "fixtures" / "lldpd"
WATCH = LLDPD / "watch_leaf-s1.txt"


def split(text: str, framing: str) -> list[str]:
    splitter = NotificationSplitter(framing)  # type: ignore[arg-type]
    out: list[str] = []
    for line in text.split("\n"):
        out.extend(splitter.feed(line))
    return out + splitter.flush()


# -- pure parts ---------------------------------------------------------------------------


def test_lldpcli_watch_output_splits_into_one_notification_per_event() -> None:
    events = split(WATCH.read_text("utf-8"), "paragraphs")
    assert [watch_event(json.loads(e)) for e in events] == [
        ("added", ["swp7"]),
        ("updated", ["swp7"]),
        ("deleted", ["swp8"]),
    ]


def test_line_framing_and_a_trailing_paragraph() -> None:
    assert split('{"a": 1}\n\n{"b": 2}\n', "lines") == ['{"a": 1}', '{"b": 2}']
    assert split("{\n  1\n}", "paragraphs") == ["{\n  1\n}"]  # no blank line at EOF
    big = NotificationSplitter("paragraphs", max_size=10)
    assert big.feed("x" * 50) == [] and big.flush() == ["(oversized)"]


def test_watch_event_refuses_what_is_not_a_watch_document() -> None:
    show = json.loads((LLDPD / "leaf-s1_one_neighbor.json").read_text("utf-8"))
    with pytest.raises(LldpdFormatError, match="unknown watch event 'lldp'"):
        watch_event(show)
    with pytest.raises(LldpdFormatError):
        watch_event([1])


def test_orient() -> None:
    assert orient("srv-01", "leaf-s1", "target") == ("leaf-s1", "srv-01")
    assert orient("leaf-s1", "srv-01", "source") == ("leaf-s1", "srv-01")


def _settings(**kw: object) -> CommandSourceSettings:
    return CommandSourceSettings.model_validate({"type": "command", **kw})


def test_watch_settings() -> None:
    lldpd = _settings(argv=["/usr/sbin/lldpcli", "-f", "json", "show", "neighbors"], format="lldpd")
    assert not lldpd.watch  # off by default
    lldpd = _settings(argv=["/usr/sbin/lldpcli", "show"], format="lldpd", watch=True)
    assert lldpd.watch_command() == ["/usr/sbin/lldpcli", "-f", "json", "watch"]
    assert lldpd.watch_framing() == "paragraphs"
    jsonl = _settings(argv=["x"], format="jsonl", watch=True, watch_argv=["tail", "-F", "f"])
    assert jsonl.watch_command() == ["tail", "-F", "f"] and jsonl.watch_framing() == "lines"
    with pytest.raises(ValidationError, match="watch = true needs watch_argv"):
        _settings(argv=["x"], format="jsonl", watch=True)
    with pytest.raises(ValidationError, match="watch_argv"):
        _settings(argv=["x"], format="lldpd", watch=True, watch_argv=[""])


# -- local_side, through a real command ----------------------------------------------------


async def test_local_side_source_gives_switch_host_pairs_on_a_switch() -> None:
    # leaf-s1 runs lldpd and sees srv-01 on swp7: the switch is this machine.
    settings = _settings(
        argv=["cat", str(LLDPD / "leaf-s1_one_neighbor.json")],
        format="lldpd",
        local_name="leaf-s1",
        local_side="source",
    )
    facts = await read_all(CommandSource(settings, name="sw"))
    assert facts == [("leaf-s1", "srv-01.example.net", 0)]


async def test_local_side_defaults_to_target_on_a_host() -> None:
    settings = _settings(
        argv=["cat", str(LLDPD / "srv-01_two_switches.json")], format="lldpd", local_name="srv-01"
    )
    facts = await read_all(CommandSource(settings, name="host"))
    assert facts and all(target == "srv-01" for _, target, _ in facts)
    assert all(source != "srv-01" for source, _, _ in facts)


def test_local_side_is_checked() -> None:
    with pytest.raises(ValidationError, match="local_side"):
        _settings(argv=["x"], format="lldpd", local_side="switch")


# -- the supervisor, with real processes -----------------------------------------------------


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "stream.py"
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


async def test_a_dying_stream_is_restarted_with_backoff(tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        f"""
        import sys
        sys.stdout.write(open({str(WATCH)!r}).read())
        sys.stdout.flush()
        sys.stderr.write("lldpcli: unable to connect to lldpd (token=hunter2)\\n")
        sys.exit(3)
        """,
    )
    seen: list[str] = []
    spec = StreamSpec(
        argv=argv,
        env=dict(os.environ),
        framing="paragraphs",
        secrets=["hunter2"],
        backoff_base=0.05,
        backoff_cap=0.2,
    )
    sup = StreamSupervisor(spec, name="leaf", on_notification=seen.append)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(sup.run(stop))
        try:
            await _until(lambda: sup.starts >= 4)
        finally:
            stop.set()
            async with asyncio.timeout(20):
                await task
    stderr = [l["stderr"] for l in logs if l["event"] == "stream_stderr"]
    assert stderr and "token=***" in stderr[0] and "hunter2" not in json.dumps(logs)
    exited = [l for l in logs if l["event"] == "stream_exited"]
    assert [l["restart_in"] for l in exited[:3]] == [0.05, 0.1, 0.2]  # doubling, capped
    assert sup.exit_codes[:2] == [3, 3]
    events = [s for s in seen if s.startswith("{")]
    assert [watch_event(json.loads(e))[0] for e in events[:3]] == ["added", "updated", "deleted"]
    # each restart is a notification too: changes may have been missed meanwhile
    assert any("restarted" in s for s in seen)


async def test_stop_ends_the_whole_process_group_and_a_stubborn_child(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    argv = _script(
        tmp_path,
        f"""
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stubborn: only SIGKILL ends it
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        print('{{"lldp-added": {{}}}}', flush=True)
        print("", flush=True)
        time.sleep(600)
        """,
    )
    seen: list[str] = []
    sup = StreamSupervisor(
        StreamSpec(argv=argv, env=dict(os.environ), framing="paragraphs", term_grace=0.5),
        name="leaf",
        on_notification=seen.append,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await _until(lambda: bool(seen) and pids.exists() and len(pids.read_text().split()) == 2)
    leader, child = (int(p) for p in pids.read_text().split())
    assert _alive(leader) and _alive(child)
    stop.set()
    async with asyncio.timeout(20):
        await task
    await _until(lambda: not _alive(child))
    assert not _alive(leader)
    assert sup.starts == 1 and seen == ['{"lldp-added": {}}']


async def test_a_missing_program_is_retried_not_fatal(tmp_path: Path) -> None:
    sup = StreamSupervisor(
        StreamSpec(argv=[str(tmp_path / "no-such-lldpcli")], env={}, backoff_base=0.02),
        name="leaf",
        on_notification=lambda _: None,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await _until(lambda: sup.starts >= 2)
    stop.set()
    async with asyncio.timeout(20):
        await task
    assert sup.exit_codes[0] is None

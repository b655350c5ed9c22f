"""The pidfile is identified strictly: `syncd resync` signals only a live syncd that holds
the pidfile's lock and whose /proc executable and argv are syncd's own. Real child
processes; the ones that must not be signalled die of SIGHUP's default action if they are."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.runtime.control import (
    ControlError,
    is_syncd_argv,
    read_pidfile,
    remove_pidfile,
    request_resync,
    write_pidfile,
)
from tests.helpers import REPO

# A stand-in daemon: a script named `syncd`, run as `python .../syncd run ...`, exactly as
# the console script runs. It takes the pidfile as syncd does and waits for a SIGHUP.
SYNCD_LIKE = f"""
import pathlib, signal, sys, time
sys.path.insert(0, {str(REPO)!r})
from syncd.runtime.control import write_pidfile
got = []
signal.signal(signal.SIGHUP, lambda *a: got.append(1))
pidfile, ready, lock = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4] == "lock"
if lock:
    write_pidfile(pidfile)
else:
    import os
    pidfile.write_text(f"{{os.getpid()}}\\n")
ready.touch()
deadline = time.time() + 20
while not got and time.time() < deadline:
    time.sleep(0.01)
sys.exit(0 if got else 1)
"""

# Holds the pidfile's lock but is not syncd (any program could flock a file).
LOCKER = """
import fcntl, os, pathlib, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
pathlib.Path(sys.argv[2]).touch()
time.sleep(20)
"""


def wait_file(path: Path) -> None:
    deadline = time.monotonic() + 15
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def start_syncd_like(
    tmp_path: Path, children: list[subprocess.Popen[bytes]], *, lock: bool
) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "bin" / "syncd"
    script.parent.mkdir(exist_ok=True)
    script.write_text(SYNCD_LIKE)
    pidfile, ready = tmp_path / "syncd.pid", tmp_path / "ready"
    args = [sys.executable, str(script), "run", str(pidfile), str(ready), "lock" if lock else "-"]
    proc = subprocess.Popen(args)
    children.append(proc)
    wait_file(ready)
    return proc, pidfile


def test_sighup_reaches_a_locked_syncd(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    proc, pidfile = start_syncd_like(tmp_path, children, lock=True)
    assert read_pidfile(pidfile) == proc.pid
    msg = request_resync(pidfile=pidfile, ops_url=None)
    assert msg == f"resync requested: sent SIGHUP to syncd pid {proc.pid}"
    assert proc.wait(15) == 0


def test_a_second_writer_is_refused_naming_the_holder(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    proc, pidfile = start_syncd_like(tmp_path, children, lock=True)
    with pytest.raises(ControlError, match=f"already running as pid {proc.pid}"):
        write_pidfile(pidfile)
    assert pidfile.read_text() == f"{proc.pid}\n"  # untouched


def test_an_unlocked_pidfile_is_never_signalled(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    # Looks like syncd in /proc, but holds no lock: e.g. the pid of a crashed syncd was
    # reused by another syncd-looking process. SIGHUP would kill it (no handler... here it
    # has one, and exits 0 only if signalled, so exit 1 at kill time proves it was not).
    proc, pidfile = start_syncd_like(tmp_path, children, lock=False)
    with pytest.raises(ControlError, match="no syncd holds its lock"):
        request_resync(pidfile=pidfile, ops_url=None)
    proc.kill()
    assert proc.wait(15) == -signal.SIGKILL


def test_a_locking_process_that_is_not_syncd_is_never_signalled(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    pidfile, ready = tmp_path / "syncd.pid", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(pidfile), str(ready)])
    children.append(proc)
    wait_file(ready)
    with pytest.raises(ControlError, match=f"process {proc.pid} is not syncd"):
        request_resync(pidfile=pidfile, ops_url=None)
    time.sleep(0.1)
    assert proc.poll() is None  # SIGHUP's default action would have ended it


def test_a_look_alike_command_line_is_not_syncd(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    # The old check accepted any process with "syncd" anywhere in its command line.
    ready = tmp_path / "ready"
    code = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(20)"
    proc = subprocess.Popen([sys.executable, "-c", code, "syncd", "run"])
    children.append(proc)
    wait_file(ready)
    pidfile = tmp_path / "syncd.pid"
    pidfile.write_text(f"{proc.pid}\n")
    with pytest.raises(ControlError, match="is not syncd"):
        request_resync(pidfile=pidfile, ops_url=None)
    time.sleep(0.1)
    assert proc.poll() is None


def test_a_crashed_syncd_leaves_a_file_the_next_one_takes_over(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    proc, pidfile = start_syncd_like(tmp_path, children, lock=True)
    proc.kill()
    proc.wait(15)
    with pytest.raises(ControlError, match="stale pidfile"):
        read_pidfile(pidfile)
    write_pidfile(pidfile)  # the lock died with the process
    try:
        assert pidfile.read_text().strip().isdigit()
    finally:
        remove_pidfile(pidfile)
    assert not pidfile.exists()


@pytest.mark.parametrize(
    ("exe", "argv", "expected"),
    [
        ("/usr/bin/python3.11", ["python3", "-m", "syncd", "run", "--config", "x"], True),
        ("/usr/bin/python3.11", ["/usr/bin/python3", "-u", "-m", "syncd", "once"], True),
        ("/usr/bin/python3", ["/usr/bin/python3", "/usr/local/bin/syncd", "run"], True),
        ("/opt/syncd/syncd", ["syncd", "run"], True),
        ("/usr/bin/python3", ["python3", "-m", "syncd", "resync"], False),
        ("/usr/bin/python3", ["python3", "-c", "pass", "syncd", "run"], False),
        ("/usr/bin/vim", ["vim", "syncd", "run"], False),
        ("/usr/bin/python3", ["python3", "/tmp/syncd.py", "run"], False),
        ("/usr/bin/sleep", ["sleep", "30"], False),
    ],
)
def test_syncd_argv(exe: str, argv: list[str], expected: bool) -> None:
    assert is_syncd_argv(exe, argv) is expected

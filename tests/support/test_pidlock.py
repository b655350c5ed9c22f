"""The pid-holding lock both "one syncd at a time" rules use (syncd.support.pidlock)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.support.pidlock import LockBusy, NotRegular, PidLock, is_locked, read_pid

HOLD = (
    "import sys, time; from syncd.support.pidlock import PidLock; "
    "PidLock.take(__import__('pathlib').Path(sys.argv[1])); print('held', flush=True); "
    "time.sleep(60)"
)


def test_take_writes_our_pid_and_locks_until_close(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    lock = PidLock.take(path, strict=True)
    assert read_pid(path) == os.getpid()
    assert is_locked(path)
    lock.close()
    assert not is_locked(path)
    assert path.exists()  # close keeps the file; remove() takes it away


@pytest.mark.slow
def test_another_process_holding_it_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy) as busy:
            PidLock.take(path)
        assert busy.value.holder == holder.pid
    finally:
        holder.kill()
        holder.wait(10)
    PidLock.take(path).close()  # the lock died with its process


def test_strict_refuses_a_symlink_and_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep\n", encoding="ascii")
    link = tmp_path / "x.pid"
    link.symlink_to(target)
    with pytest.raises(OSError):
        PidLock.take(link, strict=True)
    assert target.read_text(encoding="ascii") == "keep\n"
    (tmp_path / "d.pid").mkdir()
    with pytest.raises((NotRegular, OSError)):
        PidLock.take(tmp_path / "d.pid", strict=True)


def test_remove_leaves_a_file_that_names_someone_else(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    lock = PidLock.take(path, strict=True)
    path.write_text("1\n", encoding="ascii")  # a successor took it over
    lock.remove()
    assert path.read_text(encoding="ascii") == "1\n"
    mine = PidLock.take(path, strict=True)
    mine.remove()
    assert not path.exists()


def test_read_pid_takes_only_a_positive_number(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    for text, pid in [("42\n", 42), ("0\n", None), ("-3\n", None), ("x\n", None), ("", None)]:
        path.write_text(text, encoding="ascii")
        assert read_pid(path) == pid
    assert read_pid(tmp_path / "missing") is None

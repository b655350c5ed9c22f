"""Real bad-day filesystems for tests: a small tmpfs (disk full) and read-only bind mounts.

Mounting needs root (CAP_SYS_ADMIN); without it the tests that need a mount say so and
are skipped, and the store tests that fill SQLite's own page limit still run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (needs root): {done.stderr.strip()}")


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30, check=True)


@contextmanager
def small_fs(where: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` KiB mounted at ``where`` (created), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(where))
    try:
        yield where
    finally:
        _umount(where)


@contextmanager
def read_only(target: Path) -> Iterator[Path]:
    """``target`` (a directory or a file) made read-only for everyone, root included."""
    _mount("--bind", str(target), str(target))
    try:
        done = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        yield target
    finally:
        _umount(target)


def fill(fs: Path, leave_kb: int) -> Path:
    """Fill the filesystem at ``fs`` with a pad file, leaving about ``leave_kb`` KiB free."""
    pad = fs / "pad"
    fd = os.open(pad, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while os.write(fd, chunk):
                pass
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave_kb * 1024))
    finally:
        os.close(fd)
    return pad

"""A file holding our pid under an exclusive ``flock``, held for the process's life.

Both "one syncd at a time" rules use it: the pidfile (:mod:`syncd.runtime.control`) and the
state file's lock (:mod:`syncd.state.lock`). The lock, not the pid, is the proof: it dies
with its process, so a file left behind by a killed one is never mistaken for a live holder,
and the pid is there only for the next one to name who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path


class LockBusy(Exception):
    """Another process holds the lock; ``holder`` is the pid it wrote, when readable."""

    def __init__(self, path: Path, holder: int | None) -> None:
        super().__init__(f"{path} is locked" + (f" by pid {holder}" if holder else ""))
        self.path = path
        self.holder = holder


class NotRegular(Exception):
    """The path is a symlink, a directory or a device, not a file of ours."""


class Replaced(Exception):
    """The file kept being replaced between our open and our lock."""


class PidLock:
    """An exclusive lock on ``path`` with our pid written in it, held until :meth:`close`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def take(cls, path: Path, *, strict: bool = False) -> PidLock:
        """Lock ``path`` (created if missing) and write our pid in it.

        ``strict`` (a pidfile others signal by): never through a symlink, only a regular
        file, and a file replaced between open and lock is opened again. Otherwise (the
        state lock) a read-only directory is no reason to fail: an existing file still
        locks, without our pid in it. Raises :class:`LockBusy`, :class:`NotRegular`,
        :class:`Replaced` or the ``OSError`` of the open.
        """
        for _ in range(3):
            fd = _open(path, strict)
            try:
                if strict and not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise NotRegular(f"{path} is not a regular file")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise LockBusy(path, read_pid(path)) from None
                if strict and not _same_file(path, fd):
                    os.close(fd)  # the previous holder removed it between open and lock
                    continue
                if _writable(fd):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            except BaseException:
                os.close(fd)
                raise
            return cls(path, fd)
        raise Replaced(f"{path} keeps being replaced")

    def close(self) -> None:
        """Release the lock (the file stays)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        """Remove the file if it still names us (a successor may have taken it), release."""
        if read_pid(self.path) == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.close()


def read_pid(path: Path) -> int | None:
    """The pid written in ``path``; None if unreadable or not a pid."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isascii() and text.isdigit() and int(text) > 0 else None


def is_locked(path: Path) -> bool:
    """Does some process hold a lock on ``path`` (its owner does, all its life)?"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the shared lock if we got it
    return False


def _open(path: Path, strict: bool) -> int:
    if strict:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        try:  # a read-only directory: an existing lock file still locks (no pid in it)
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            raise exc from None


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _writable(fd: int) -> bool:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY

"""Reading a secret from a file (app_secret_file, token_file, a systemd credential).

A secret file is small and regular. A FIFO would block the reader forever, /dev/zero
would fill memory, a directory or a device is a mistake: all are refused with one line
naming the file, never the content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_SECRET_BYTES = 64 * 1024
"""A secret file larger than this is a wrong path, not a secret."""


class SecretFileError(ValueError):
    """The file cannot hold the secret; the message names the file and why."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, for an error line."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path) -> int:
    """Open ``path`` for reading without blocking on a FIFO; OSError, or ValueError if
    it is not a regular file. Returns a blocking file descriptor the caller closes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"is {file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_secret_file(path: Path, what: str) -> str:
    """The stripped text of a secret file; SecretFileError names ``what`` and the file."""
    where = f"{what} {str(path)!r}"
    try:
        fd = open_regular(path)
    except OSError as exc:
        raise SecretFileError(f"{where} is unreadable: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SecretFileError(f"{where} {exc}") from None
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise SecretFileError(f"{where} is unreadable: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(f"{where} is larger than {MAX_SECRET_BYTES} bytes: not a secret")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretFileError(f"{where} is not UTF-8 text") from None
    if not text:
        raise SecretFileError(f"{where} is empty")
    return text


def read_credential(path: Path | None, credential: str, what: str) -> str:
    """A secret from ``path``, or from the systemd credential ``credential``."""
    if path is None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        candidate = Path(creds) / credential if creds else None
        if candidate is None or not candidate.is_file():
            raise ValueError(
                f"no secret: set {what}, {what}_file, or provide the systemd credential "
                f"{credential!r}"
            )
        path = candidate
    try:
        return read_secret_file(path, f"{what}_file")
    except SecretFileError as exc:
        raise ValueError(str(exc)) from None

"""Helpers for the ops tests: where the repo is, and tools that must exist."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def require_tool(name: str, install: str) -> str:
    """Path of ``name`` (the venv's bin first), or fail saying how to install it.

    A missing tool is a broken test machine, not a reason to pass: failing keeps
    CI honest about what it actually checked.
    """
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.is_file():
        return str(venv_bin)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install it with: {install}", pytrace=False)
    return found


def bind_notify_socket(kind: str, tmp_path: Path) -> tuple[socket.socket, str]:
    """A datagram socket like systemd's NOTIFY_SOCKET: a ``path`` or an ``abstract`` name.

    Returns the bound socket and the address to put in NOTIFY_SOCKET.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        return sock, str(path)
    name = f"syncd-notify-test-{os.getpid()}-{time.monotonic_ns()}"
    sock.bind(b"\0" + name.encode())
    return sock, "@" + name

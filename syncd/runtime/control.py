"""``syncd resync``: ask a running daemon for a full resync, and the pidfile it relies on.

Two ways in: the ops endpoint (``POST /resync``), which works across users and
inside a pod but lifts prune guards only with the resync token, and SIGHUP to the
pid in the pidfile, which works with the ops server disabled and always lifts them
(see :func:`request_resync` for the order). A SIGHUP to the wrong process could
kill it, so the pid is identified strictly before it is signalled: the pidfile is
locked by the daemon that wrote it (flock, held for its lifetime, so a file left by
a crashed daemon is unlocked), and the pid's /proc executable and argv are syncd's
own. The signal goes through a pidfd opened before the checks, so a pid reused in
between cannot receive it. Every failure raises ControlError with a message an
operator can act on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import urllib.error
import urllib.request
from pathlib import Path

from syncd.support.pidlock import LockBusy, NotRegular, PidLock, Replaced, is_locked, read_pid


class ControlError(Exception):
    """The daemon could not be reached; the message says why and what to check."""


# -- pidfile -------------------------------------------------------------------

_held: dict[str, PidLock] = {}
"""Pidfiles this process wrote, with the lock that holds them."""


def write_pidfile(path: Path) -> None:
    """Write our pid and hold an exclusive lock on the file until remove_pidfile.

    Refuses (ControlError) when another process holds the lock: a syncd is running.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _held[str(path)] = PidLock.take(path, strict=True)
    except NotRegular:
        raise ControlError(f"pidfile {str(path)!r} is not a regular file") from None
    except LockBusy as exc:
        who = f" as pid {exc.holder}" if exc.holder is not None else ""
        raise ControlError(f"pidfile {str(path)!r}: syncd is already running{who}") from None
    except Replaced:
        raise ControlError(
            f"pidfile {str(path)!r} keeps being replaced; is another syncd starting?"
        ) from None


def remove_pidfile(path: Path) -> None:
    """Remove the pidfile if it is still ours (a successor may have taken it over)."""
    held = _held.pop(str(path), None)
    if held is not None:
        held.remove()
    elif read_pid(path) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_pidfile(path: Path) -> int:
    """The pid of the running syncd named by ``path``, or ControlError saying why not."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ControlError(
            f"pidfile {str(path)!r} does not exist: is syncd running "
            "(with ops.pidfile set to this path)?"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ControlError(f"pidfile {str(path)!r} is unreadable: {exc}") from None
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise ControlError(f"pidfile {str(path)!r} does not hold a pid: {text[:40]!r}")
    pid = int(text)
    if not _alive(pid):
        raise ControlError(
            f"stale pidfile {str(path)!r}: no process {pid} (syncd is not running; remove the file)"
        )
    why_not = _not_syncd(pid)
    if why_not is not None:
        raise ControlError(
            f"stale pidfile {str(path)!r}: process {pid} is not syncd ({why_not}); "
            "refusing to signal it"
        )
    if not is_locked(path):
        raise ControlError(
            f"stale pidfile {str(path)!r}: no syncd holds its lock, so process {pid} is not "
            "the syncd that wrote it; refusing to signal it"
        )
    return pid


# -- resync --------------------------------------------------------------------


def ops_url_for(host: str, port: int) -> str:
    """The URL a local client uses for an ops server bound to ``host``:``port``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def request_resync(
    *, pidfile: Path | None, ops_url: str | None, timeout: float = 5.0, token: str | None = None
) -> str:
    """Ask for a full resync that lifts the prune guards (the operator's resync); returns
    what happened, or raises ControlError.

    With the resync token the ops endpoint is tried first, then SIGHUP; without it SIGHUP
    (which lifts the guards) comes first, and the endpoint last (a resync that lifts none,
    said so). The error names every failure if all fail.
    """
    if ops_url is None and pidfile is None:
        raise ControlError(
            "nowhere to send the request: enable ops (ops.enabled) or set ops.pidfile"
        )
    problems: list[str] = []
    if ops_url is not None and token is not None:
        try:
            return _post_resync(ops_url, timeout, token)
        except ControlError as exc:
            problems.append(str(exc))
    if pidfile is not None:
        try:
            pid = _signal_verified(pidfile, signal.SIGHUP)
        except ControlError as exc:
            problems.append(str(exc))
        else:
            return f"resync requested: sent SIGHUP to syncd pid {pid}"
    if ops_url is not None and token is None:
        try:
            said = _post_resync(ops_url, timeout, None)
        except ControlError as exc:
            problems.append(str(exc))
        else:
            return f"{said}; prune guards stay (no resync token configured, no pidfile)"
    raise ControlError("; ".join(problems))


def _signal_verified(pidfile: Path, signum: int) -> int:
    """Send ``signum`` to the syncd named by the pidfile, through a pidfd opened before
    the checks so a pid reused meanwhile never gets it; the pid, or ControlError."""
    first = read_pid(pidfile)
    pidfd: int | None = None
    if first is not None:
        with contextlib.suppress(OSError, AttributeError):
            pidfd = os.pidfd_open(first)
    try:
        pid = read_pidfile(pidfile)
        if pidfd is not None and pid != first:
            raise ControlError(f"pidfile {str(pidfile)!r} changed while being checked; try again")
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(pid, signum)
        except PermissionError:
            raise ControlError(
                f"not allowed to signal pid {pid} (run as the daemon's user or root, "
                "or use the ops endpoint)"
            ) from None
        except ProcessLookupError:
            raise ControlError(f"syncd pid {pid} exited just now") from None
        return pid
    finally:
        if pidfd is not None:
            os.close(pidfd)


# The ops server is local (loopback or the pod itself): never go through HTTP(S)_PROXY.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post_resync(base: str, timeout: float, token: str | None = None) -> str:
    url = base.rstrip("/") + "/resync"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        raise ControlError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ControlError(
            f"cannot reach {url}: {reason} (is syncd running with ops enabled?)"
        ) from None
    if status != 202:
        raise ControlError(f"{url} answered HTTP {status}, expected 202")
    return f"resync requested via {url}"


# -- process checks --------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_COMMANDS = frozenset({"run", "once"})


def is_syncd_argv(exe: str, argv: list[str]) -> bool:
    """Is this the command line of a syncd daemon? ``python -m syncd run ...``,
    ``[python] .../syncd run ...`` (the console script); interpreter options allowed."""
    base = os.path.basename(exe)
    if base == "syncd":
        rest = argv[1:]
    elif _PYTHON.match(base):
        rest = argv[1:]
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest = rest[2:] if rest[0] in ("-X", "-W") else rest[1:]
        if rest[:2] == ["-m", "syncd"]:
            rest = rest[2:]
        elif rest and os.path.basename(rest[0]) == "syncd":
            rest = rest[1:]
        else:
            return False
    else:
        return False
    return bool(rest) and rest[0] in _COMMANDS


def _not_syncd(pid: int) -> str | None:
    """None if /proc shows syncd's executable and argv for ``pid``, else why not."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError as exc:
        return (
            f"cannot read /proc/{pid} to check: {exc.strerror or exc}; "
            "run as the daemon's user or root, or use the ops endpoint"
        )
    argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]
    if not argv:
        return "it has no command line (exiting, or a kernel thread)"
    if not is_syncd_argv(exe.removesuffix(" (deleted)"), argv):
        return f"it runs {os.path.basename(exe)} {os.path.basename(argv[0])}"
    return None

"""``syncd resync``: ask a running daemon for a full resync, and the pidfile it relies on.

Two ways in, tried in this order: the ops endpoint (``POST /resync``), which
works across users and inside a pod, then SIGHUP to the pid in the pidfile,
which works with the ops server disabled. A SIGHUP to the wrong process could
kill it, so the pid is checked first: it must exist and, where /proc tells,
run syncd. Every failure raises ControlError with a message an operator can act on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path


class ControlError(Exception):
    """The daemon could not be reached; the message says why and what to check."""


# -- pidfile -------------------------------------------------------------------


def write_pidfile(path: Path) -> None:
    """Write our pid atomically; refuse if the file names another live syncd."""
    other = _read_pid(path)
    if other is not None and other != os.getpid() and _alive(other) and _is_syncd(other):
        raise ControlError(f"pidfile {str(path)!r}: syncd is already running as pid {other}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    os.replace(tmp, path)


def remove_pidfile(path: Path) -> None:
    """Remove the pidfile if it is still ours (a successor may have taken it over)."""
    if _read_pid(path) == os.getpid():
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
    if not text.isdigit() or int(text) <= 0:
        raise ControlError(f"pidfile {str(path)!r} does not hold a pid: {text[:40]!r}")
    pid = int(text)
    if not _alive(pid):
        raise ControlError(
            f"stale pidfile {str(path)!r}: no process {pid} (syncd is not running; remove the file)"
        )
    if not _is_syncd(pid):
        raise ControlError(
            f"stale pidfile {str(path)!r}: process {pid} is not syncd; refusing to signal it"
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


def request_resync(*, pidfile: Path | None, ops_url: str | None, timeout: float = 5.0) -> str:
    """Ask for a full resync; returns what happened, or raises ControlError.

    The ops endpoint is preferred; if it fails and a pidfile is known, SIGHUP is
    tried, and the error names both failures if both fail.
    """
    if ops_url is None and pidfile is None:
        raise ControlError(
            "nowhere to send the request: enable ops (ops.enabled) or set ops.pidfile"
        )
    problems: list[str] = []
    if ops_url is not None:
        try:
            return _post_resync(ops_url, timeout)
        except ControlError as exc:
            problems.append(str(exc))
    if pidfile is not None:
        try:
            pid = read_pidfile(pidfile)
        except ControlError as exc:
            problems.append(str(exc))
        else:
            try:
                os.kill(pid, signal.SIGHUP)
            except PermissionError:
                problems.append(
                    f"not allowed to signal pid {pid} (run as the daemon's user or root, "
                    "or use the ops endpoint)"
                )
            except ProcessLookupError:
                problems.append(f"syncd pid {pid} exited just now")
            else:
                return f"resync requested: sent SIGHUP to syncd pid {pid}"
    raise ControlError("; ".join(problems))


# The ops server is local (loopback or the pod itself): never go through HTTP(S)_PROXY.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post_resync(base: str, timeout: float) -> str:
    url = base.rstrip("/") + "/resync"
    req = urllib.request.Request(url, data=b"", method="POST")
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


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


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


def _is_syncd(pid: int) -> bool:
    """Best effort: True unless /proc clearly shows another program."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (or hidden by ProtectProc=): can't tell, trust the pidfile
    if not raw:
        return False  # zombie, kernel thread, or mid-exec: not a syncd we can talk to
    return b"syncd" in raw

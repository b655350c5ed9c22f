"""Shared plumbing: the simulator and syncd as separate processes, fixtures, configs, rusage.

Every measured program runs in its own process so that the 2-core machine's two cores
serve the simulator and syncd apart, and ``os.wait4`` gives each child's own CPU time and
peak RSS (nothing of the bench's own work is counted).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ASST = "bk_switch_connect_host"
RELATION = "switch-host"
APP_CODE = "bench"
APP_SECRET = "bench-secret"
HOST_BASE = 100_000
"""Hosts are numbered HOST_BASE+1 ...; switches 1 ..."""
BATCH = 200


def compile_sources() -> None:
    """Write the bytecode of syncd and the simulator, as every deployment has it (pip
    compiles what it installs; the image runs compileall). Without it, where
    PYTHONDONTWRITEBYTECODE is set (this environment), every child process compiles
    syncd's modules from source: ~0.2 CPU-s of fixed cost no deployment pays, and a figure
    that depends on whether the tests ran first (they write the caches)."""
    import compileall

    for package in ("syncd", "cmdb_simulator", "bench"):
        if not compileall.compile_dir(REPO / package, quiet=2):
            raise RuntimeError(f"compileall failed in {package}/")


def machine() -> dict[str, Any]:
    """Where the figures come from: cores, CPU model, Python, OS, date, load."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "bytecode": "compiled before the run",
    }


# -- topologies ---------------------------------------------------------------------------


def grid(switches: int, hosts: int, *, first_switch: int = 1) -> Iterator[tuple[int, int]]:
    """Every (switch, host) pair of a switches x hosts grid."""
    for s in range(first_switch, first_switch + switches):
        for h in range(HOST_BASE + 1, HOST_BASE + hosts + 1):
            yield s, h


def shape(pairs: int) -> tuple[int, int]:
    """A (switches, hosts) grid of exactly ``pairs`` pairs (100 hosts per switch)."""
    hosts = min(pairs, 100)
    if pairs % hosts:
        raise ValueError(f"{pairs} pairs is not a multiple of {hosts}")
    return pairs // hosts, hosts


def write_csv(path: Path, pairs: Iterable[tuple[int, int]]) -> Path:
    """The topology file syncd reads: CSV with the default header."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write("bk_inst_id,bk_asst_inst_id\n")
        fh.writelines(f"{s},{d}\n" for s, d in pairs)
    return path


def write_fixture(path: Path, switches: int, hosts: int) -> Path:
    """A simulator fixture: instance ranges for the grid and one n:n model association."""
    doc = {
        "apps": [{"bk_app_code": APP_CODE, "bk_app_secret": APP_SECRET}],
        "instance_ranges": {
            "bk_switch": [1, max(1, switches)],
            "host": [HOST_BASE + 1, HOST_BASE + max(1, hosts)],
        },
        "model_associations": [
            {
                "bk_obj_asst_id": ASST,
                "bk_obj_id": "bk_switch",
                "bk_asst_id": "connect",
                "bk_asst_obj_id": "host",
                "mapping": "n:n",
            }
        ],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def write_config(
    directory: Path,
    url: str,
    topology: Path,
    *,
    rate_limit: float,
    concurrency: int,
    level: str = "info",
    state: Path | None = None,
) -> Path:
    """A syncd config for one relation read from ``topology``; a fresh state unless given."""
    if state is None:
        for old in directory.glob("state.db*"):
            old.unlink()
    cfg = directory / "syncd.toml"
    cfg.write_text(
        f"""
[cmdb]
url = "{url}"
gateway = "esb"
app_code = "{APP_CODE}"
app_secret = "{APP_SECRET}"
username = "admin"
rate_limit = {rate_limit}
concurrency = {concurrency}
timeout = 120

[state]
path = "{state or directory / "state.db"}"

[sync]
interval = 300

[log]
level = "{level}"
format = "json"

[ops]
enabled = false

[[relations]]
name = "{RELATION}"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "{ASST}"
source = {{ type = "file", path = "{topology}", format = "csv" }}
""",
        encoding="utf-8",
    )
    return cfg


# -- child processes ----------------------------------------------------------------------


@dataclass
class ChildResult:
    """What one finished child process cost, from ``os.wait4``."""

    returncode: int
    wall: float
    cpu_user: float
    cpu_sys: float
    max_rss_mb: float
    stdout: Path
    stderr: Path

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    def lines(self, event: str | None = None) -> Iterator[dict[str, Any]]:
        """The child's JSON log lines (``event``: only lines that name it, the others
        not parsed)."""
        mark = f'"event": "{event}"' if event is not None else ""
        with self.stdout.open(encoding="utf-8") as fh:
            for text in fh:
                if mark not in text:
                    continue
                with contextlib.suppress(ValueError):
                    doc = json.loads(text)
                    if isinstance(doc, dict):
                        yield doc


def run_child(args: list[str], out: Path, env: dict[str, str] | None = None) -> ChildResult:
    """Run ``python ARGS`` with stdout to a file; its own rusage via ``os.wait4``."""
    err = out.with_suffix(".stderr")
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=stdout,
            stderr=stderr,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ChildResult(
        returncode=proc.returncode,
        wall=wall,
        cpu_user=usage.ru_utime,
        cpu_sys=usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        stdout=out,
        stderr=err,
    )


def run_syncd_once(config: Path, out: Path, profile: Path | None = None) -> ChildResult:
    """``python -m syncd once --config CONFIG``: one full cycle in its own process.

    With ``profile``, the child runs under cProfile and writes its stats there.
    """
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    result = run_child([*prefix, "-m", "syncd", "once", "--config", str(config)], out)
    if result.returncode != 0:
        tail = result.stderr.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"syncd once exited {result.returncode}: {tail}")
    return result


@dataclass
class Simulator:
    """``python -m cmdb_simulator`` in its own process."""

    fixture: Path
    rate_limit: float | None = None
    latency_ms: float = 0.0
    per_detail_ms: float = 0.0
    extra: tuple[str, ...] = ()
    """More simulator options, e.g. ``("--skip-cost-us", "1")``."""
    url: str = ""
    cpu: float = 0.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def options(self) -> list[str]:
        """The command line's options: ``python -m cmdb_simulator OPTIONS``."""
        args = ["--listen", "127.0.0.1:0", "--fixture", str(self.fixture)]
        # Unlimited unless asked: `syncd simulate` now defaults to bk-cmdb's 100/s (issue 11).
        args += ["--rate-limit", "off" if self.rate_limit is None else str(self.rate_limit)]
        args += ["--latency-ms", str(self.latency_ms), "--per-detail-ms", str(self.per_detail_ms)]
        return args + list(self.extra)

    def __enter__(self) -> Simulator:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cmdb_simulator", *self.options()],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        try:
            self.url = str(json.loads(line)["url"])
        except (ValueError, KeyError) as exc:
            self._stop()
            raise RuntimeError(f"simulator did not start: {line!r}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except ChildProcessError:
            return
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime
        if proc.stdout is not None:
            proc.stdout.close()

    def _get(self, path: str, data: bytes | None = None) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=30) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
        return doc

    def stats(self) -> dict[str, Any]:
        """GET /_sim/stats."""
        return self._get("/_sim/stats")

    def reset(self) -> None:
        """POST /_sim/reset: zero the counters (the data stays)."""
        self._get("/_sim/reset", b"{}")


def ideal_time(
    batches: list[int], rate: float | None, latency_ms: float, per_detail_ms: float, conc: int
) -> float:
    """The larger of requests / rate and the latency-bound time at ``conc`` in flight."""
    rate_bound = len(batches) / rate if rate else 0.0
    latency_bound = sum(latency_ms + n * per_detail_ms for n in batches) / 1000 / conc
    return max(rate_bound, latency_bound)


def batch_sizes(pairs: int, size: int = BATCH) -> list[int]:
    """The request sizes ``pairs`` new pairs are cut into."""
    full, rest = divmod(pairs, size)
    return [size] * full + ([rest] if rest else [])


def pair_counts(result: ChildResult) -> tuple[dict[str, int], dict[str, Any] | None]:
    """Pair lines by outcome, and the ``cycle`` summary line, from a syncd child's log."""
    counts: dict[str, int] = {}
    cycle: dict[str, Any] | None = None
    for line in result.lines():
        event = line.get("event")
        if event == "pair":
            outcome = str(line.get("outcome"))
            counts[outcome] = counts.get(outcome, 0) + 1
        elif event == "cycle":
            cycle = line
    return counts, cycle

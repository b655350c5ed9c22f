"""Scenario: how long a NetBox change takes to reach the CMDB through a signed webhook.

A real ``syncd run`` (its own process), the simulator (its own process) and the NetBox
stand-in (bench/netbox_standin.py, in a thread of this process, so the bench can add,
delete and move cables in it) with N synthetic cables. Devices carry their CMDB id in a
custom field, so the relation is id-keyed and no name lookup is timed. For each change
the stand-in is changed first, then the delivery NetBox would send (delivery 001's
shape, re-signed) is POSTed to ``hooks.listen``; the time is from that POST to the
daemon's ``pair`` line saying the CMDB answered (created, or deleted). Each figure is the
median of 5 (min and max beside it). The stand-in charges ``COST_MS`` per row it serves,
NetBox's own serialising cost, so reading one cable costs what it costs on NetBox.

Burst: 50 cables created one delivery after the other (NetBox's worker sends them back to
back): the first pair's time from its delivery, and whether all 50 arrived, exactly.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import APP_CODE, APP_SECRET, ASST, HOST_BASE, REPO, Simulator, write_fixture
from bench.netbox_standin import StandIn, serve_standin, synthetic_cables

SECRET = "bench-webhook-secret"
COST_MS = 5.0
HOSTS_PER_SWITCH = 50
SPARE_HOSTS = 200
"""Hosts without a cable, for the cables the scenario creates and the ends it moves to."""
ROUNDS = 5
BURST = 50


class _Served:
    """The stand-in on its own event loop in a thread."""

    def __init__(self, state: StandIn) -> None:
        self.state = state
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the NetBox stand-in did not start")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve_standin(self.state):
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class _Daemon:
    """``syncd run`` with its JSON lines collected as they come, each with its arrival time."""

    def __init__(self, config: Path) -> None:
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            try:
                doc = json.loads(text)
            except ValueError:
                continue
            if isinstance(doc, dict):
                self.lines.append((time.perf_counter(), doc))

    def wait(self, pred: Any, start: int = 0, timeout: float = 600) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, line in self.lines[start:]:
                if pred(line):
                    return when, line
            if self.proc.poll() is not None:
                raise RuntimeError("syncd exited")
            time.sleep(0.002)
        raise TimeoutError("no such line from syncd")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _world(cables: int, cost_ms: float) -> tuple[StandIn, int]:
    """N cables (50 hosts a switch) plus spare hosts; every device carries its CMDB id."""
    state = synthetic_cables(cables, HOSTS_PER_SWITCH)
    switches = -(-cables // HOSTS_PER_SWITCH)
    template = next(d for d in state.devices.values() if d["id"] > switches)
    for n in range(cables + 1, cables + SPARE_HOSTS + 1):
        state.devices[switches + n] = {**template, "id": switches + n, "name": f"srv-{n}"}
    for ident, device in state.devices.items():
        bk = ident if ident <= switches else HOST_BASE + ident - switches
        device["custom_fields"] = {"bk_id": bk}
    state.cost_ms = cost_ms
    state.device_cost_ms = 0.0
    return state, switches


def _config(directory: Path, cmdb: str, netbox: str) -> Path:
    cfg = directory / "syncd.toml"
    cfg.write_text(
        f"""
[cmdb]
url = "{cmdb}"
app_code = "{APP_CODE}"
app_secret = "{APP_SECRET}"
rate_limit = 200
timeout = 120

[state]
path = "{directory / "state.db"}"

[sync]
interval = 3600
watch = false

[log]
format = "json"

[ops]
enabled = false

[hooks]
listen = "127.0.0.1:0"

[hooks.netbox]
secret = "{SECRET}"

[[relations]]
name = "dc"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "{ASST}"
source = {{ type = "netbox", url = "{netbox}", token = "{"0" * 40}", switch_role = ["switch"], \
switch_key = "custom_fields.bk_id", host_key = "custom_fields.bk_id", timeout = 300 }}

[relations.prune]
enabled = true
grace_seconds = 0
grace_cycles = 1
""",
        encoding="utf-8",
    )
    return cfg


def _delivery(event: str, cable: dict[str, Any], counter: list[int]) -> tuple[bytes, str]:
    """The body NetBox's worker would POST for ``cable`` (its REST form in ``data``), signed."""
    counter[0] += 1
    body = {
        "event": event,
        "timestamp": f"2026-12-07T01:44:33.{counter[0]:06d}+00:00",
        "object_type": "dcim.cable",
        "data": cable,
        "request": {"id": f"bench-{counter[0]}", "path": "/api/dcim/cables/", "method": "POST"},
        "snapshots": {"prechange": None, "postchange": None},
    }
    raw = json.dumps(body).encode()
    return raw, hmac.new(SECRET.encode(), raw, hashlib.sha512).hexdigest()


def _post(url: str, raw: bytes, signature: str) -> None:
    req = urllib.request.Request(
        url, data=raw, method="POST", headers={"X-Hook-Signature": signature}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        if resp.status not in (200, 202):
            raise RuntimeError(f"webhook answered {resp.status}")


def _pair_line(outcome: str, pair: tuple[int, int]) -> Any:
    return lambda line: (
        line.get("event") == "pair"
        and line.get("outcome") == outcome
        and (line.get("bk_inst_id"), line.get("bk_asst_inst_id")) == pair
    )


def _cable(state: StandIn, ident: int, switch: int, host_device: int) -> dict[str, Any]:
    template = state.lists["/api/dcim/cables/"][0]
    row = copy.deepcopy(template)
    row["id"] = ident
    row["a_terminations"][0]["object"]["device"].update(id=switch, name=f"sw-{switch}")
    row["b_terminations"][0]["object"]["device"].update(
        id=host_device, name=state.devices[host_device]["name"]
    )
    return row


def _figures(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
    }


def run(workdir: Path, cables: int, cost_ms: float = COST_MS) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("state.db*"):
        old.unlink()
    state, switches = _world(cables, cost_ms)
    fixture = write_fixture(workdir / "cmdb.json", switches, cables + SPARE_HOSTS)
    served = _Served(state)
    out: dict[str, Any] = {"cables": cables, "cost_ms_per_row": cost_ms}
    try:
        with Simulator(fixture) as sim:
            daemon = _Daemon(_config(workdir, sim.url, state.url))
            try:
                started = time.perf_counter()
                _, hook = daemon.wait(lambda line: line.get("event") == "hooks_listening")
                _, cycle = daemon.wait(lambda line: line.get("event") == "cycle")
                out["first_full_cycle_s"] = round(time.perf_counter() - started, 1)
                out["first_cycle_created"] = cycle.get("created")
                url, counter = str(hook["url"]), [0]
                spare = iter(range(switches + cables + 1, switches + cables + SPARE_HOSTS + 1))

                def bk(device: int) -> int:
                    return int(state.devices[device]["custom_fields"]["bk_id"])

                created, moved, deleted = _rounds(state, daemon, url, counter, spare, bk)
                next_id = cables + ROUNDS + 1
                out["create"] = _figures(created)
                out["move_b_end"] = _figures(moved)
                out["delete_pruned"] = _figures(deleted)
                out.update(_burst(state, daemon, url, counter, spare, next_id, bk))
            finally:
                daemon.stop()
    finally:
        served.close()
    out["create_median_s"] = out["create"]["median_s"]
    out["move_median_s"] = out["move_b_end"]["median_s"]
    out["delete_median_s"] = out["delete_pruned"]["median_s"]
    return out


def _rounds(
    state: StandIn, daemon: _Daemon, url: str, counter: list[int], spare: Any, bk: Any
) -> tuple[list[float], list[float], list[float]]:
    """ROUNDS x (a cable created, its B end moved, then deleted): seconds from each POST
    to the CMDB's answer in the daemon's ``pair`` line."""
    rows = state.lists["/api/dcim/cables/"]
    next_id = len(rows) + 1
    created, moved, deleted = [], [], []

    def timed(event: str, row: dict[str, Any], outcome: str, pair: tuple[int, int]) -> float:
        mark = len(daemon.lines)
        raw, sig = _delivery(event, row, counter)
        t0 = time.perf_counter()
        _post(url, raw, sig)
        t1, _ = daemon.wait(_pair_line(outcome, pair), mark)
        return t1 - t0

    for _ in range(ROUNDS):
        host = next(spare)
        row = _cable(state, next_id, 1, host)
        next_id += 1
        rows.append(row)
        created.append(timed("created", row, "created", (1, bk(host))))
        new = next(spare)
        moved_row = _cable(state, row["id"], 1, new)
        rows[rows.index(row)] = moved_row
        mark = len(daemon.lines)
        moved.append(timed("updated", moved_row, "created", (1, bk(new))))
        daemon.wait(_pair_line("deleted", (1, bk(host))), mark)
        rows.remove(moved_row)
        deleted.append(timed("deleted", moved_row, "deleted", (1, bk(new))))
    return created, moved, deleted


def _burst(
    state: StandIn, daemon: _Daemon, url: str, counter: list[int], spare: Any, next_id: int, bk: Any
) -> dict[str, Any]:
    rows = state.lists["/api/dcim/cables/"]
    mark = len(daemon.lines)
    wanted: set[tuple[int, int]] = set()
    sent_at: dict[tuple[int, int], float] = {}
    for i in range(BURST):
        host = next(spare)
        row = _cable(state, next_id + i, 1, host)
        rows.append(row)
        raw, sig = _delivery("created", row, counter)
        pair = (1, bk(host))
        wanted.add(pair)
        sent_at[pair] = time.perf_counter()
        _post(url, raw, sig)
    first = min(sent_at, key=sent_at.__getitem__)
    t_first, _ = daemon.wait(_pair_line("created", first), mark)
    deadline = time.monotonic() + 120
    got: set[tuple[int, int]] = set()
    while time.monotonic() < deadline and got != wanted:
        got = {
            (int(line["bk_inst_id"]), int(line["bk_asst_inst_id"]))
            for _, line in daemon.lines[mark:]
            if line.get("event") == "pair" and line.get("outcome") == "created"
        }
        time.sleep(0.05)
    last = max(w for w, line in daemon.lines[mark:] if line.get("event") == "pair")
    groups = sum(1 for _, line in daemon.lines[mark:] if line.get("event") == "change")
    return {
        "burst_first_pair_s": round(t_first - sent_at[first], 3),
        "burst_all_s": round(last - min(sent_at.values()), 3),
        "burst_exact": got == wanted,
        "burst_groups": groups,
    }

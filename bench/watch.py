"""Scenarios 6 and 7 (issue 15): drift repair by the watch, and relists by key vs by offset.

``drift``: ``syncd run`` (own process) keeps 2 x N pairs in a simulator (own process,
20 s watch hold as bk-cmdb). Once it has converged, the bench deletes N desired pairs
at once (two ``delete_related_inst_asso`` calls) and follows the simulator's own event
chain: each pair's repair latency is from its delete's answer to its create event.
Figures: p50, p99 and all-back, and the simulator's peak requests per second against
``rate_limit`` while syncd repairs (the bench's own few calls included). The deletes
come SETTLE seconds after the first cycle, when syncd's watch is idle.

``relist``: N associations in the simulator with ``--skip-cost-us`` (each row that
``page.start`` skips costs that much server time, as MongoDB walks it). The same client
at ``rate_limit`` reads them all by key (``id > last``, start 0: what syncd does) and by
offset (``page.start`` += 500: what it did). Figures: each over pages / rate, the cost
of the last tenth of pages over the first tenth, and the server's peak rps.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.common import (
    APP_CODE,
    APP_SECRET,
    ASST,
    HOST_BASE,
    REPO,
    Simulator,
    grid,
    write_config,
    write_csv,
    write_fixture,
)
from syncd.cmdb import apis
from syncd.cmdb.apis import PAGE_LIMIT
from syncd.cmdb.client import CmdbClient
from syncd.config.settings import CmdbSettings
from syncd.core.answer import Verdict
from syncd.core.watchevents import parse_answer

RATE = 100.0
"""syncd's rate_limit in both scenarios (bk-cmdb's own default limit)."""
CONCURRENCY = 8
SKIP_COST_US = 1.0
"""Server microseconds per row an offset skips: MongoDB walking an index and fetching
each document in memory (a conservative figure; on disk it is far more)."""
LATENCY_MS = 20.0
PER_DETAIL_MS = 0.1
"""The simulator's service time in the drift scenario: a CMDB on a nearby network."""
SETTLE = 5.0
"""Seconds between syncd's first cycle and the deletes: its watch first works through
the events of its own creates (200 per answer, 0.2 s apart at rate 100), as a daemon
long in service has; the repair is measured from that steady state."""
DEADLINE = 120.0
"""Seconds any wait in these scenarios may take before the run fails."""


def _settings(url: str, rate: float = RATE) -> CmdbSettings:
    return CmdbSettings(
        url=url,
        gateway="esb",
        app_code=APP_CODE,
        app_secret=SecretStr(APP_SECRET),
        rate_limit=rate,
        concurrency=CONCURRENCY,
        timeout=120,
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- drift repair ---------------------------------------------------------------------


def _wait_line(path: Path, event: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"syncd exited {proc.returncode} before {event!r}")
        for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if f'"event": "{event}"' in text or f'"event":"{event}"' in text:
                return
        time.sleep(0.1)
    raise RuntimeError(f"no {event!r} line within {DEADLINE}s")


async def _delete_and_follow(url: str, gone: set[tuple[int, int]]) -> dict[str, Any]:
    """Delete ``gone`` at once, then follow the event chain until each is created again."""
    async with CmdbClient(_settings(url, rate=1000)) as client:
        ids = {
            (s, d): aid
            async for page in client.iter_associations("bk_switch", ASST)
            for s, d, aid in page
        }
        answer = await client.watch_associations("bk_switch", None)
        _, cursor, _ = parse_answer(answer.data)
        todo = sorted(ids[p] for p in gone)
        deleted_at: dict[tuple[int, int], float] = {}
        started = time.monotonic()
        for i in range(0, len(todo), PAGE_LIMIT):
            chunk = todo[i : i + PAGE_LIMIT]
            answer = await client.delete_associations("bk_switch", chunk)
            if answer.verdict is not Verdict.OK:
                raise RuntimeError(f"delete refused: {answer.error}")
            now = time.monotonic()
            in_chunk = set(chunk)
            deleted_at.update({p: now for p in gone if ids[p] in in_chunk})
        back: dict[tuple[int, int], float] = {}
        async with asyncio.timeout(DEADLINE):
            while len(back) < len(gone):
                answer = await client.watch_associations("bk_switch", cursor)
                if answer.verdict is not Verdict.OK:
                    raise RuntimeError(f"watch refused: {answer.error}")
                events, cursor, _ = parse_answer(answer.data)
                now = time.monotonic()
                for event in events:
                    pair = (event.src, event.dst)
                    if event.type == "create" and pair in gone and pair not in back:
                        back[pair] = now
    latencies = [back[p] - deleted_at[p] for p in gone]
    return {
        "deleted": len(gone),
        "delete_s": round(max(deleted_at.values()) - started, 3),
        "repair_p50_s": round(_percentile(latencies, 0.5), 3),
        "repair_p99_s": round(_percentile(latencies, 0.99), 3),
        "repair_all_back_s": round(max(back.values()) - started, 3),
    }


def drift(workdir: Path, deleted: int) -> dict[str, Any]:
    """Delete ``deleted`` of 2 x ``deleted`` desired pairs behind a running syncd."""
    workdir.mkdir(parents=True, exist_ok=True)
    hosts = 100
    switches = max(1, 2 * deleted // hosts)
    fixture = write_fixture(workdir / "fixture.json", switches, hosts)
    desired = list(grid(switches, hosts))
    topology = write_csv(workdir / "topology.csv", desired)
    gone = set(desired[1::2][:deleted])
    with Simulator(fixture, None, LATENCY_MS, PER_DETAIL_MS) as sim:
        cfg = write_config(workdir, sim.url, topology, rate_limit=RATE, concurrency=CONCURRENCY)
        log = workdir / "syncd.support.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "syncd", "run", "--config", str(cfg)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ},
            )
        try:
            _wait_line(log, "cycle", proc)
            time.sleep(SETTLE)
            sim.reset()
            figures = asyncio.run(_delete_and_follow(sim.url, gone))
            stats = sim.stats()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    lines = [json.loads(t) for t in log.read_text().splitlines() if t.startswith("{")]
    drift_lines = sum(1 for line in lines if line.get("event") == "drift")
    return {
        "desired": len(desired),
        **figures,
        "drift_lines": drift_lines,
        "cycles": sum(1 for line in lines if line.get("event") == "cycle"),
        "rate_limit": RATE,
        "peak_rps": stats["peak_rps"],
        "peak_over_rate": round(stats["peak_rps"] / RATE, 3),
        "requests": stats["requests"],
        "watch_requests": stats["requests_by_api"].get("resource_watch", 0),
        "all_back_over_30s_promise": round(figures["repair_all_back_s"] / 30.0, 3),
    }


# -- relist by key vs by offset --------------------------------------------------------


def _relist_fixture(path: Path, rows: int) -> Path:
    hosts = 1000
    switches = max(1, rows // hosts)
    write_fixture(path, switches, hosts)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["instance_associations"] = [
        {"bk_obj_asst_id": ASST, "bk_inst_id": s, "bk_asst_inst_id": HOST_BASE + h}
        for s in range(1, switches + 1)
        for h in range(1, hosts + 1)
    ]
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


async def _by_key(client: CmdbClient) -> tuple[int, list[float]]:
    rows, pages = 0, []
    last = time.perf_counter()
    async for page in client.iter_associations("bk_switch", ASST):
        rows += len(page)
        now = time.perf_counter()
        pages.append(now - last)
        last = now
    return rows, pages


async def _by_offset(client: CmdbClient) -> tuple[int, list[float]]:
    """What syncd did before issue 15: the same query, ``page.start`` += 500."""
    rows, pages, start = 0, [], 0
    condition = {"field": "bk_obj_asst_id", "operator": "equal", "value": ASST}
    while True:
        body = {
            "conditions": {"condition": "AND", "rules": [condition]},
            "fields": ["id", "bk_inst_id", "bk_asst_inst_id", "bk_obj_asst_id"],
            "page": {"start": start, "limit": PAGE_LIMIT, "sort": "id"},
        }
        began = time.perf_counter()
        answer = await client.call(apis.SEARCH_ASSOCIATIONS, body, {"bk_obj_id": "bk_switch"})
        if answer.verdict is not Verdict.OK:
            raise RuntimeError(f"search refused: {answer.error}")
        info = answer.data["info"]
        pages.append(time.perf_counter() - began)
        rows += len(info)
        if len(info) < PAGE_LIMIT:
            return rows, pages
        start += PAGE_LIMIT


def _tenths(pages: list[float]) -> tuple[float, float]:
    tenth = max(1, len(pages) // 10)
    return statistics.mean(pages[:tenth]), statistics.mean(pages[-tenth:])


def _read(url: str, offset: bool) -> tuple[int, list[float], float]:
    async def go() -> tuple[int, list[float], float]:
        async with CmdbClient(_settings(url)) as client:
            began = time.perf_counter()
            rows, pages = await (_by_offset(client) if offset else _by_key(client))
            return rows, pages, time.perf_counter() - began

    return asyncio.run(go())


OFFSET_ROWS = 200_000
"""Offset paging is compared at most at this size: at 1,000,000 rows it would skip
10^9 rows (1,000 s of server time at 1 us a row), far past a benchmark's minute."""


def _relist_run(
    workdir: Path, rows: int, skip_cost_us: float, ways: tuple[str, ...]
) -> dict[str, Any]:
    fixture = _relist_fixture(workdir / f"fixture-{rows}.json", rows)
    out: dict[str, Any] = {}
    with Simulator(fixture, extra=("--skip-cost-us", str(skip_cost_us))) as sim:
        for name in ways:
            sim.reset()
            got, pages, seconds = _read(sim.url, offset=name == "offset")
            stats = sim.stats()
            if got != rows:
                raise RuntimeError(f"{name}: read {got} of {rows} rows")
            first, last = _tenths(pages)
            out[f"{name}_pages"] = len(pages)
            out[f"{name}_s"] = round(seconds, 3)
            out[f"{name}_over_pages_per_rate"] = round(seconds / (len(pages) / RATE), 3)
            out[f"{name}_last_tenth_over_first"] = round(last / first, 2)
            out[f"{name}_rows_skipped"] = stats["rows_skipped"]
            out[f"{name}_peak_over_rate"] = round(stats["peak_rps"] / RATE, 3)
    return out


def relist(workdir: Path, rows: int, skip_cost_us: float = SKIP_COST_US) -> dict[str, Any]:
    """Read associations by key and by offset at ``RATE`` requests a second: both at
    ``min(rows, OFFSET_ROWS)``, and by key alone at ``rows`` when that is more."""
    workdir.mkdir(parents=True, exist_ok=True)
    both = min(rows, OFFSET_ROWS)
    out: dict[str, Any] = {"rows": both, "rate_limit": RATE, "skip_cost_us": skip_cost_us}
    out.update(_relist_run(workdir, both, skip_cost_us, ("key", "offset")))
    out["offset_over_key"] = round(out["offset_s"] / out["key_s"], 2)
    if rows > both:
        big = _relist_run(workdir, rows, skip_cost_us, ("key",))
        out["big_rows"] = rows
        out.update({f"big_{k}": v for k, v in big.items()})
        # Offset paging at that size, from the server time its skips would cost alone.
        pages = rows // PAGE_LIMIT + 1
        skipped = PAGE_LIMIT * pages * (pages - 1) // 2
        out["big_offset_skip_s_estimate"] = round(skipped * skip_cost_us / 1e6, 1)
    return out

"""How many 200-detail batch creates per second the simulator serves (latency 0).

Starts ``python -m cmdb_simulator`` in its own process (so client and server do
not share a CPU-bound event loop), then drives it with N concurrent aiohttp
workers for a few seconds per scenario:

- ``new``: every detail creates a pair (the write path, worst case for memory);
- ``exists``: every detail is already there (the idempotent retry path).

Usage: ``.venv/bin/python bench/simulator_rps.py [--concurrency 20] [--seconds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

ASST = "bk_switch_connect_host"
SWITCHES = 5000
HOSTS = (100001, 400000)
FIXTURE = {
    "apps": [{"bk_app_code": "bench", "bk_app_secret": "bench"}],
    "instance_ranges": {"bk_switch": [1, SWITCHES], "host": list(HOSTS)},
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


def _pairs() -> Iterator[tuple[int, int]]:
    for host in range(HOSTS[0], HOSTS[1] + 1):
        for switch in range(1, SWITCHES + 1, 997):
            yield switch, host


async def _drive(
    url: str, batches: Iterator[list[dict[str, int]]], workers: int, seconds: float
) -> tuple[int, float]:
    endpoint = f"{url}/api/c/compapi/v2/cc/batch_create_instance_association/"
    base: dict[str, Any] = {
        "bk_app_code": "bench",
        "bk_app_secret": "bench",
        "bk_username": "bench",
        "bk_obj_id": "bk_switch",
        "bk_asst_obj_id": "host",
        "bk_obj_asst_id": ASST,
    }
    done = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                body = json.dumps({**base, "details": next(batches)})
                async with session.post(endpoint, data=body) as resp:
                    doc = await resp.json()
                    assert doc["result"] is True, doc
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - start
    return done, elapsed


def _cpu_seconds(pid: int) -> float:
    """The server's user+system CPU time (Linux /proc); 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(label: str, n: int, secs: float, cpu: float, concurrency: int) -> None:
    per_core = f", {n / cpu:.0f} req/s per server CPU-second" if cpu > 0 else ""
    print(
        f"{label:<15} {n} requests in {secs:.2f}s = {n / secs:.0f} req/s "
        f"({n * 200 / secs:.0f} details/s), concurrency {concurrency}{per_core}"
    )


def _batches(pairs: Iterator[tuple[int, int]]) -> Iterator[list[dict[str, int]]]:
    while True:
        chunk = list(itertools.islice(pairs, 200))
        if len(chunk) < 200:
            raise RuntimeError("ran out of pairs; lower --seconds")
        yield [{"bk_inst_id": s, "bk_asst_inst_id": d} for s, d in chunk]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fixture = Path(tmp) / "fixture.json"
        fixture.write_text(json.dumps(FIXTURE), encoding="utf-8")
        proc = subprocess.Popen(
            # Unlimited: `syncd simulate` defaults to bk-cmdb's 100/s per resource (issue 11).
            [
                sys.executable,
                "-m",
                "cmdb_simulator",
                "--fixture",
                str(fixture),
                "--rate-limit",
                "off",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        try:
            assert proc.stdout is not None
            url = json.loads(proc.stdout.readline())["url"]
            created: list[list[dict[str, int]]] = []

            def recording(source: Iterator[list[dict[str, int]]]) -> Iterator[list[dict[str, int]]]:
                for batch in source:
                    created.append(batch)
                    yield batch

            cpu = _cpu_seconds(proc.pid)
            batches = recording(_batches(_pairs()))
            n, secs = asyncio.run(_drive(url, batches, args.concurrency, args.seconds))
            used, cpu = _cpu_seconds(proc.pid) - cpu, _cpu_seconds(proc.pid)
            _report("new pairs:", n, secs, used, args.concurrency)
            again = itertools.cycle(created)
            n, secs = asyncio.run(_drive(url, again, args.concurrency, args.seconds))
            _report("already exist:", n, secs, _cpu_seconds(proc.pid) - cpu, args.concurrency)
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

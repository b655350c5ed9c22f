"""A loopback NetBox 4.7 stand-in: recorded rows, NetBox's pagination, and its serialising cost.

What it copies from NetBox (netbox/netbox/api/pagination.py, DRF's LimitOffsetPagination):

- ``limit`` missing: ``PAGINATE_COUNT`` (50); ``limit=0`` or above ``MAX_PAGE_SIZE`` (1000):
  ``MAX_PAGE_SIZE``, silently; ``offset`` past the end: no rows;
- ``count`` is counted again at every request; ``next``/``previous`` are the request's
  URL with ``offset`` replaced (DRF sorts the query);
- ``fields=a,b``: only those top-level fields of each row (nested objects unchanged).

List filters (site, status, ...) are not applied: each list is served as given (the
recordings hold what the recorded filters matched); only the cable list's ``id=`` and
``device_id=`` (any of the values given, as NetBox's filterset does) pick rows, for the
reads a webhook's change makes. ``/api/dcim/devices/`` answers its
``id=`` lookups. Every list request costs ``cost_ms`` per row it returns, modelling
NetBox serialising them (measured ~5 ms a cable on NetBox 4.7.3), with at most
``workers`` requests served at once (NetBox's gunicorn workers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

MAX_PAGE_SIZE = 1000
PAGINATE_COUNT = 50
LISTS = ("/api/dcim/cables/", "/api/dcim/interfaces/")
DEVICES = "/api/dcim/devices/"
STATS = "/_standin/stats"
"""The stand-in's counters (not NetBox's API)."""


@dataclass
class StandIn:
    """The server's state; tests change ``lists`` (``on_request``) and read the counters."""

    lists: dict[str, list[dict[str, Any]]]
    devices: dict[int, dict[str, Any]]
    cost_ms: float = 5.0
    device_cost_ms: float = 0.0
    workers: int = 8
    max_page_size: int = MAX_PAGE_SIZE
    omit_count: bool = False
    """Answer ``count: null``, as NetBox's cursor (``start``) mode does."""
    fail_requests: set[int] = field(default_factory=set)
    """List requests (by number, 1, 2, ...) answered with HTTP 500."""
    on_request: Callable[[StandIn, int], None] | None = None
    """Called with the list request's number (1, 2, ...) before it is answered."""
    url: str = ""
    requests: int = 0
    list_requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    exchanges: list[dict[str, Any]] = field(default_factory=list)


def _limit(query: Any, max_page_size: int) -> int:
    try:
        limit = int(query["limit"])
        if limit < 0:
            raise ValueError
    except (KeyError, ValueError):
        return min(PAGINATE_COUNT, max_page_size)
    return max_page_size if limit == 0 else min(max_page_size, limit)


def _offset(query: Any) -> int:
    try:
        return max(0, int(query["offset"]))
    except (KeyError, ValueError):
        return 0


def _link(base: str, pairs: list[tuple[str, str]], offset: int | None, limit: int) -> str:
    """DRF's replace_query_param / remove_query_param: the query sorted by name."""
    merged: dict[str, list[str]] = {}
    for key, value in pairs:
        merged.setdefault(key, []).append(value)
    merged["limit"] = [str(limit)]
    merged.pop("offset", None)
    if offset is not None:
        merged["offset"] = [str(offset)]
    return f"{base}?{urlencode(sorted(merged.items()), doseq=True)}"


def _ends(row: dict[str, Any]) -> set[int]:
    """The device ids at a cable's ends."""
    ends = set()
    for term in (*row.get("a_terminations", ()), *row.get("b_terminations", ())):
        device = (term.get("object") or {}).get("device") or {}
        if isinstance(device.get("id"), int):
            ends.add(device["id"])
    return ends


def _picked(rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The rows ``id=`` and ``device_id=`` pick (each filter: any of its values)."""
    ids = {int(v) for k, v in pairs if k == "id" and v.isdigit()}
    devices = {int(v) for k, v in pairs if k == "device_id" and v.isdigit()}
    if ids:
        rows = [r for r in rows if r.get("id") in ids]
    if devices:
        rows = [r for r in rows if _ends(r) & devices]
    return rows


def _select(row: dict[str, Any], fields: str | None) -> dict[str, Any]:
    if not fields:
        return row
    wanted = set(fields.split(","))
    return {k: v for k, v in row.items() if k in wanted}


def page_body(
    rows: list[dict[str, Any]],
    query: Any,
    pairs: list[tuple[str, str]],
    base: str,
    max_page_size: int = MAX_PAGE_SIZE,
) -> dict[str, Any]:
    """One list answer as NetBoxPagination builds it (offset mode)."""
    limit, offset = _limit(query, max_page_size), _offset(query)
    count = len(rows)
    results = [] if offset > count else rows[offset : offset + limit]
    nxt = None if offset + limit >= count else _link(base, pairs, offset + limit, limit)
    prev = None
    if offset > 0:
        prev = _link(base, pairs, None if offset - limit <= 0 else offset - limit, limit)
    return {
        "count": count,
        "next": nxt,
        "previous": prev,
        "results": [_select(r, query.get("fields")) for r in results],
    }


@asynccontextmanager
async def serve_standin(state: StandIn) -> AsyncIterator[StandIn]:
    """Serve ``state`` on a loopback port; ``state.url`` is its base URL."""
    workers = asyncio.Semaphore(state.workers)

    async def handler(request: web.Request) -> web.Response:
        if request.path != STATS:
            state.requests += 1
        pairs = list(request.query.items())
        base = f"{state.url}{request.path}"
        if request.path in state.lists:
            state.list_requests += 1
            if state.on_request is not None:
                state.on_request(state, state.list_requests)
            if state.list_requests in state.fail_requests:
                return web.json_response({"detail": "Server Error"}, status=500)
            rows = _picked(state.lists[request.path], pairs)
            body = page_body(rows, request.query, pairs, base, state.max_page_size)
            if state.omit_count:
                body["count"] = None
            cost = state.cost_ms
        elif request.path == STATS:
            counters = ("requests", "list_requests", "peak_in_flight")
            return web.json_response({k: getattr(state, k) for k in counters})
        elif request.path == DEVICES:
            wanted = [int(v) for k, v in pairs if k == "id" and v.isdigit()]
            found = [state.devices[i] for i in sorted(set(wanted)) if i in state.devices]
            body = page_body(found, request.query, pairs, base, state.max_page_size)
            cost = state.device_cost_ms
        else:
            return web.json_response({"detail": "Not found."}, status=404)
        state.in_flight += 1
        state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        try:
            async with workers:
                await asyncio.sleep(cost * len(body["results"]) / 1000)
        finally:
            state.in_flight -= 1
        state.exchanges.append(
            {
                "method": "GET",
                "path": request.path,
                "query": sorted([k, v] for k, v in pairs),
                "status": 200,
                "body": body,
            }
        )
        return web.json_response(body)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


# -- rows from the recordings ----------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "sources" / "fixtures" / "netbox"
PLACEHOLDER = "http://netbox.test"


def recorded_rows(name: str) -> StandIn:
    """A stand-in holding every row a recording saw (lists in order, devices by id)."""
    doc = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    lists: dict[str, list[dict[str, Any]]] = {}
    seen: dict[str, set[int]] = {}
    devices: dict[int, dict[str, Any]] = {}
    for ex in doc["exchanges"]:
        results = ex["body"].get("results") if isinstance(ex["body"], dict) else None
        if ex.get("derived") or ex["status"] != 200 or not isinstance(results, list):
            continue
        if ex["path"] == DEVICES:
            devices.update({d["id"]: d for d in results})
            continue
        rows, ids = lists.setdefault(ex["path"], []), seen.setdefault(ex["path"], set())
        for row in results:
            if row["id"] not in ids:
                ids.add(row["id"])
                rows.append(row)
    return StandIn(lists=lists, devices=devices)


def synthetic_cables(cables: int, hosts_per_switch: int = 50) -> StandIn:
    """``cables`` switch-to-server cables cut from the recorded cable C-001 (sw-a to srv-01)."""
    base = recorded_rows("cables_dc1")
    template = base.lists["/api/dcim/cables/"][0]
    switch_dev, host_dev = base.devices[1], base.devices[5]
    text = json.dumps(template)
    rows: list[dict[str, Any]] = []
    devices: dict[int, dict[str, Any]] = {}
    switches = -(-cables // hosts_per_switch)
    for i in range(1, cables + 1):
        sw, host = (i - 1) // hosts_per_switch + 1, switches + i
        row = json.loads(text)
        row["id"] = i
        row["display"] = row["label"] = f"C-{i:05d}"
        row["a_terminations"][0]["object"]["device"].update(id=sw, name=f"sw-{sw}")
        row["b_terminations"][0]["object"]["device"].update(id=host, name=f"srv-{i}")
        rows.append(row)
        devices[sw] = {**switch_dev, "id": sw, "name": f"sw-{sw}"}
        devices[host] = {**host_dev, "id": host, "name": f"srv-{i}"}
    return StandIn(lists={"/api/dcim/cables/": rows}, devices=devices)


# -- as a process (the benchmark keeps NetBox's work off syncd's core) -----------------------


async def _serve_forever(cables: int, cost_ms: float, device_cost_ms: float, workers: int) -> None:
    state = synthetic_cables(cables)
    state.cost_ms, state.device_cost_ms, state.workers = cost_ms, device_cost_ms, workers
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve_standin(state):
        print(json.dumps({"url": state.url}), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a loopback NetBox stand-in (synthetic cables)")
    parser.add_argument("--cables", type=int, default=1500)
    parser.add_argument("--cost-ms", type=float, default=5.0)
    parser.add_argument("--device-cost-ms", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    asyncio.run(_serve_forever(args.cables, args.cost_ms, args.device_cost_ms, args.workers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

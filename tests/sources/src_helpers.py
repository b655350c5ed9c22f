"""Helpers for the source tests: loopback JSON servers and the NetBox replay server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from syncd.sources.base import RawFact, Source

HERE = Path(__file__).resolve().parent
NETBOX_FIXTURES = HERE / "fixtures" / "netbox"
PLACEHOLDER = "http://netbox.test"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """Any request to a loopback server goes to ``handler``; yields the base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Replay:
    """A recorded NetBox answering from loopback; ``seen`` lists (path_qs, headers)."""

    name: str
    url: str = ""
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def load_recording(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((NETBOX_FIXTURES / f"{name}.json").read_text("utf-8"))
    return doc


@asynccontextmanager
async def replay_netbox(name: str) -> AsyncIterator[Replay]:
    """Serve one recorded scenario: the same path and query get the recorded answer.

    The query must match exactly (as a sorted multiset), so a source that asks
    NetBox something it was not recorded asking gets a 404 and the test fails.
    """
    doc = load_recording(name)
    state = Replay(name)

    async def handler(request: web.Request) -> web.Response:
        state.seen.append((request.path_qs, dict(request.headers)))
        query = sorted([k, v] for k, v in request.query.items())
        for ex in doc["exchanges"]:
            if ex["path"] == request.path and sorted(ex["query"]) == query:
                text = json.dumps(ex["body"]).replace(PLACEHOLDER, state.url)
                return web.Response(text=text, status=ex["status"], content_type="application/json")
        return web.json_response({"detail": f"not recorded: {request.path_qs}"}, status=404)

    async with serve(handler) as url:
        state.url = url
        yield state


async def read_all(source: Source) -> list[RawFact]:
    out: list[RawFact] = []
    async for chunk in source.facts():
        out.extend(chunk)
    return out

"""The hardened listener under the ops server: idle, slow and malformed clients over real
loopback sockets, with a lowered connection limit (the bounds, not the machine's)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from syncd.runtime.health import Health
from syncd.runtime.listener import ListenerLimits, RateLimitedLine
from syncd.runtime.metrics import Metrics
from syncd.runtime.ops import OpsServer
from tests.helpers import capture_logs

PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
"""A request whose headers never end."""
WAIT = 15.0


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


@contextlib.asynccontextmanager
async def _ops(limits: ListenerLimits | None = None) -> AsyncIterator[OpsServer]:
    server = OpsServer(
        Health(max_age=100),
        Metrics(process_metrics=False),
        lambda: None,
        port=0,
        routes=[("POST", "/echo", _echo)],
        **({} if limits is None else {"limits": limits}),
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _open(url: str, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conns = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(PARTIAL)
        conns.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in conns), return_exceptions=True)
    return conns


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True once the server closed (EOF or reset); reads what it sent before."""
    try:
        async with asyncio.timeout(WAIT):
            while await reader.read(65536):
                pass
    except (ConnectionError, TimeoutError):
        return True
    return True


async def test_idle_partial_requests_are_dropped_and_never_starve_healthz() -> None:
    limits = ListenerLimits(max_connections=16, header_timeout=1.0)
    with capture_logs() as logs:
        async with _ops(limits) as server:
            assert server.listener is not None
            conns = await _open(server.url or "", 60)
            assert server.listener.connections <= 16
            # A probe gets in: it takes the place of the oldest stalled connection.
            async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as resp:
                assert resp.status == 200
            loop = asyncio.get_running_loop()
            began = loop.time()
            assert all(await asyncio.gather(*(_closed(r) for r, _ in conns)))
            assert loop.time() - began < WAIT
            await asyncio.sleep(0.1)
            assert server.listener.connections == 0
            for _, writer in conns:
                writer.close()
    dropped = [line for line in logs if line["event"] == "http_connection_dropped"]
    assert dropped and len(dropped) <= 4  # counted, not a line per connection
    assert sum(line["count"] for line in dropped) >= 60 - 16


async def test_a_slow_body_is_dropped_after_the_request_timeout() -> None:
    limits = ListenerLimits(max_connections=8, header_timeout=1.0, request_timeout=1.0)
    async with _ops(limits) as server:
        host, port = (server.url or "").removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 10
        )
        await writer.drain()
        answer = b""
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(WAIT):
                while chunk := await reader.read(65536):
                    answer += chunk
        writer.close()
        assert not answer or answer.startswith(b"HTTP/1.1 408")
        assert server.listener is not None and server.listener.connections == 0


MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    b"POST /resync HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
]


async def test_malformed_http_is_one_counted_line_never_a_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    statuses: list[bytes] = []
    with capture_logs() as logs:
        async with _ops() as server:
            server_metrics = server.metrics
            host, port = (server.url or "").removeprefix("http://").rsplit(":", 1)
            for _ in range(10):
                for request in MALFORMED:
                    reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(request)
                    await writer.drain()
                    with contextlib.suppress(ConnectionError):
                        async with asyncio.timeout(WAIT):
                            statuses.append((await reader.read(65536))[:12])
                    writer.close()
            async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as resp:
                assert resp.status == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error handling request" not in err, err[:500]
    assert not [r for r in caplog.records if r.name.startswith(("aiohttp", "asyncio"))]
    assert len(statuses) == 30 and all(s[9:10] == b"4" for s in statuses), statuses
    rejected = [line for line in logs if line["event"] == "http_request_rejected"]
    assert 1 <= len(rejected) <= 3, rejected
    assert sum(line["count"] for line in rejected) == 30
    assert rejected[-1]["total"] == 30 and rejected[0]["listener"] == "ops"
    counted = server_metrics.http_trouble.labels(listener="ops", kind="request_rejected")
    assert counted._value.get() == 30


def test_the_connection_cap_stays_well_below_the_open_file_limit() -> None:
    limits = ListenerLimits(max_connections=128)
    assert limits.connection_cap(1024) == 128
    assert limits.connection_cap(256) == 32
    assert limits.connection_cap(16) == 4
    assert ListenerLimits(max_connections=10).connection_cap(1 << 20) == 10


async def test_rate_limited_lines_count_what_they_hold_back() -> None:
    now = [0.0]
    lines = RateLimitedLine("t", 10.0, lambda: now[0])
    with capture_logs() as logs:
        for _ in range(5):
            lines.hit("x", reason="r")
        now[0] = 11.0
        lines.hit("x", reason="r")
        lines.hit("x", reason="r")
        lines.close()
    assert [line["count"] for line in logs] == [1, 5, 1]
    assert logs[-1]["total"] == 7

"""The CMDB client against hostile answers: redirects, huge bodies, long retry hints.

Every server here is a real aiohttp server on loopback. A second server, the
"trap", records everything it receives, so a test can prove the secret never got there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from syncd.cmdb import client as client_mod
from syncd.cmdb.client import CmdbClient, CmdbError
from syncd.config.settings import CmdbSettings
from syncd.core.answer import Verdict

SECRET = "s3cret-app-XYZ"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def cmdb(url: str, **kw: Any) -> CmdbSettings:
    return CmdbSettings.model_validate(
        {
            "url": url,
            "app_code": "syncd",
            "app_secret": SECRET,
            "retry_base": 0.01,
            "retry_cap": 0.2,
            "max_retries": 2,
            **kw,
        }
    )


OK_BODY = {"result": True, "code": 0, "message": "success", "data": []}


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_an_error_and_the_secret_stays_home(gateway: str, status: int) -> None:
    got: list[str] = []

    async def trap(request: web.Request) -> web.Response:
        got.append(json.dumps(dict(request.headers)) + (await request.text()))
        return web.json_response(OK_BODY)

    async with serve(trap) as trap_url:

        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status, headers={"Location": f"{trap_url}/elsewhere?q=1"})

        async with serve(handler) as url, CmdbClient(cmdb(url, gateway=gateway)) as client:
            with pytest.raises(CmdbError) as info:
                await client.find_object_association("bk_switch_connect_host")
    message = str(info.value)
    assert f"redirect to {trap_url}/elsewhere" in message
    assert "cmdb.url" in message and "q=1" not in message
    assert info.value.answer.verdict is Verdict.RELATION
    assert got == []  # the trap heard nothing at all, so not the secret either


async def test_http_cmdb_url_and_verify_tls_false_warn_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_mod, "_warned", set())

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(OK_BODY)

    async with serve(handler) as url:
        with capture_logs() as logs:
            async with CmdbClient(cmdb(url)):  # loopback: the secret stays on this machine
                pass
            for _ in range(2):
                async with CmdbClient(cmdb("http://cmdb.example:8080")):  # no request is sent
                    pass
            async with CmdbClient(cmdb("https://127.0.0.1:1", verify_tls=False)):
                pass
            async with CmdbClient(cmdb("https://127.0.0.1:1")):
                pass
    warned = [line["problem"] for line in logs if line["event"] == "insecure_cmdb_settings"]
    assert len(warned) == 2
    assert "http://" in warned[0] and "verify_tls" in warned[1]
    assert all(line["log_level"] == "warning" for line in logs)
    assert SECRET not in repr(logs)


async def test_an_oversized_cmdb_answer_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "MAX_ANSWER_BYTES", 4096)

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({**OK_BODY, "data": ["x" * 100] * 100})

    async with serve(handler) as url, CmdbClient(cmdb(url, max_retries=0)) as client:
        answer = await client.call(client_mod.apis.FIND_OBJECT_ASSOCIATION, {})
    assert answer.verdict is Verdict.AMBIGUOUS
    assert "larger than 4096 bytes" in answer.error


@pytest.mark.parametrize("status", [429, 503])
async def test_a_retry_after_hint_is_capped_by_retry_cap_and_a_long_wait_is_logged(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    monkeypatch.setattr(client_mod, "LONG_WAIT", 0.05)
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=status, headers={"Retry-After": "86400"})
        return web.json_response(OK_BODY)

    async with serve(handler) as url, CmdbClient(cmdb(url, retry_cap=0.1)) as client:
        with capture_logs() as logs:
            # Uncapped, the hint (a day, 300 s after outcome's own clamp) would hold this
            # call far past the bound; capped, it is one 0.1 s pause.
            async with asyncio.timeout(30):
                answer = await client.call(client_mod.apis.FIND_OBJECT_ASSOCIATION, {})
    assert answer.verdict is Verdict.OK and calls == 2
    retries = [line for line in logs if line["event"] == "retry"]
    assert len(retries) == 1 and retries[0]["log_level"] == "info"
    assert retries[0]["delay"] <= 0.1 + 0.25


async def test_a_cmdb_answer_nested_thousands_deep_is_a_bad_answer() -> None:
    async def handler(request: web.Request) -> web.Response:
        body = '{"result": true, "code": 0, "data": ' + "[" * 100_000 + "]" * 100_000 + "}"
        return web.Response(text=body, content_type="application/json")

    async with serve(handler) as url, CmdbClient(cmdb(url, max_retries=0)) as client:
        answer = await client.call(client_mod.apis.FIND_OBJECT_ASSOCIATION, {})
    assert answer.verdict is Verdict.AMBIGUOUS and "nested too deep" in answer.error

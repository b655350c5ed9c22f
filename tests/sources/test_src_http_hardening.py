"""The http source against hostile servers: redirects, huge bodies, pathological JSON."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from src_helpers import read_all, serve

from syncd.sources.base import SourceError
from syncd.sources.http import HttpSource
from syncd.sources.settings import HttpSourceSettings

TOKEN = "tok-SECRET-4242"
ROWS = [{"bk_inst_id": 1, "bk_asst_inst_id": 1001}]


def source(url: str, **kw: Any) -> HttpSource:
    settings = HttpSourceSettings.model_validate({"type": "http", "url": url, **kw})
    return HttpSource(settings, name="rel")


@pytest.mark.parametrize("auth_header", ["Authorization", "X-Api-Key"])
@pytest.mark.parametrize("status", [302, 307])
async def test_a_cross_origin_redirect_never_carries_the_token(
    auth_header: str, status: int
) -> None:
    got: list[dict[str, str]] = []

    async def other(request: web.Request) -> web.Response:
        got.append(dict(request.headers))
        return web.json_response(ROWS)

    async with serve(other) as other_url:

        async def home(request: web.Request) -> web.Response:
            return web.Response(status=status, headers={"Location": f"{other_url}/data"})

        async with serve(home) as url:
            facts = await read_all(
                source(
                    url + "/api",
                    token=TOKEN,
                    auth_header=auth_header,
                    headers={"X-Copy": f"also {TOKEN}", "X-Plain": "1"},
                )
            )
    assert [f[:2] for f in facts] == [(1, 1001)]
    assert len(got) == 1
    assert TOKEN not in repr(got) and got[0]["X-Plain"] == "1"


async def test_a_same_origin_redirect_keeps_the_token() -> None:
    got: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        got.append(dict(request.headers))
        if request.path == "/old":
            return web.Response(status=301, headers={"Location": "/new"})
        return web.json_response(ROWS)

    async with serve(handler) as url:
        facts = await read_all(source(url + "/old", token=TOKEN, auth_header="X-Api-Key"))
    assert len(facts) == 1 and len(got) == 2
    assert all(h["X-Api-Key"] == f"Bearer {TOKEN}" for h in got)


async def test_a_redirect_loop_fails_the_read() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/again"})

    async with serve(handler) as url:
        with pytest.raises(SourceError, match="more than 5 redirects"):
            await read_all(source(url + "/start"))


async def test_a_body_over_max_body_fails_the_read() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await resp.prepare(request)
        await resp.write(b"[" + b'{"bk_inst_id": 1, "bk_asst_inst_id": 2},' * 1000)
        await resp.write(b"{}]")
        return resp

    async with serve(handler) as url:
        with pytest.raises(SourceError, match=r"larger than 2048 bytes.*max_body"):
            await read_all(source(url, max_body=2048))


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '[{"bk_inst_id": 1, "bk_asst_inst_id": ' + "[" * 50_000 + "]" * 50_000 + "}]",
    ],
    ids=["deep-document", "deep-record"],
)
async def test_json_nested_thousands_deep_fails_the_read_cleanly(body: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    async with serve(handler) as url:
        with pytest.raises(SourceError, match="nested too deep"):
            await read_all(source(url))


async def test_an_integer_of_thousands_of_digits_fails_the_read_cleanly() -> None:
    async def handler(request: web.Request) -> web.Response:
        text = '[{"bk_inst_id": ' + "9" * 5000 + ', "bk_asst_inst_id": 1}]'
        return web.Response(text=text, content_type="application/json")

    async with serve(handler) as url:
        with pytest.raises(SourceError, match="not JSON"):
            await read_all(source(url))

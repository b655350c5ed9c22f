"""HttpSource over real loopback HTTP: paging, auth, path picking, failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError
from src_helpers import read_all, serve

from syncd.sources.base import SourceError
from syncd.sources.http import HttpSource
from syncd.sources.paths import compile_path, get_path
from syncd.sources.settings import HttpSourceSettings

TOKEN = "tok-SECRET-9f8e7d"


def settings(url: str, **kw: Any) -> HttpSourceSettings:
    return HttpSourceSettings.model_validate({"type": "http", "url": url, **kw})


def records(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "a_terminations": [{"object": {"device": {"name": f"sw-{i % 3}"}}}],
            "b_terminations": [{"object": {"device": {"name": f"srv-{i:02d}"}}}],
        }
        for i in range(start, start + n)
    ]


async def test_drf_next_links_auth_and_paths() -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        page = int(request.query.get("page", "1"))
        body: dict[str, Any] = {
            "count": 7,
            "results": records((page - 1) * 3, 3 if page < 3 else 1),
        }
        if page == 1:
            body["next"] = str(request.url.with_query(page=2))  # absolute
        elif page == 2:
            body["next"] = "?page=3"  # relative: resolved against the page URL
        else:
            body["next"] = None
        return web.json_response(body)

    async with serve(handler) as url:
        src = HttpSource(
            settings(
                url + "/api/dcim/cables/",
                token=TOKEN,
                auth_scheme="Token",
                headers={"X-Extra": "1"},
                source_path="a_terminations[0].object.device.name",
                target_path="b_terminations[-1].object.device.name",
            ),
            name="rel",
        )
        facts = await read_all(src)
    assert [f[:2] for f in facts] == [(f"sw-{i % 3}", f"srv-{i:02d}") for i in range(7)]
    assert [f[2] for f in facts] == list(range(1, 8))
    assert len(seen) == 3
    assert all(h["Authorization"] == f"Token {TOKEN}" and h["X-Extra"] == "1" for h in seen)
    assert src.stats.records == 7 and src.stats.bad == 0 and src.stats.extra["pages"] == 3
    assert src.origin(7).endswith("page 3 record 7") and src.origin(1).startswith("http:")


async def test_link_header_paging_and_list_body() -> None:
    async def handler(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        headers = {}
        if page < 3:
            headers["Link"] = f'<{request.url.with_query(page=page + 1)}>; rel="next"'
        data = [{"sw": f"s{page}", "host": f"h{page}"}]
        return web.json_response(data, headers=headers)

    async with serve(handler) as url:
        src = HttpSource(
            settings(url + "/x", pagination="link", source_path="sw", target_path="host"),
            name="rel",
        )
        facts = await read_all(src)
    assert [f[:2] for f in facts] == [("s1", "h1"), ("s2", "h2"), ("s3", "h3")]


async def test_records_path_and_bad_records_counted() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "data": {
                    "items": [
                        {"s": 1, "t": 2},
                        {"s": 3},  # no target: bad
                        {"s": {"nested": 1}, "t": 4},  # not a scalar: bad
                        {"s": "5", "t": "6"},
                    ]
                }
            }
        )

    async with serve(handler) as url:
        src = HttpSource(
            settings(url, records="data.items", source_path="s", target_path="t"), name="rel"
        )
        facts = await read_all(src)
    assert facts == [(1, 2, 1), ("5", "6", 4)]
    assert src.stats.records == 4 and src.stats.bad == 2


async def test_pagination_none_ignores_next() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"results": [{"a": 1, "b": 2}], "next": "/again"})

    async with serve(handler) as url:
        src = HttpSource(
            settings(url, pagination="none", source_path="a", target_path="b"), name="r"
        )
        assert len(await read_all(src)) == 1
    assert calls == 1


async def test_next_link_to_another_origin_is_rebased() -> None:
    """A proxy-fronted API often advertises its internal name; the token stays on our origin."""
    paths: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        paths.append(request.path_qs)
        if request.query.get("offset") == "1":
            return web.json_response({"results": [{"a": 2, "b": 2}], "next": None})
        nxt = "http://internal.invalid:8080/api/x/?offset=1"
        return web.json_response({"results": [{"a": 1, "b": 1}], "next": nxt})

    async with serve(handler) as url:
        src = HttpSource(settings(url + "/api/x/", source_path="a", target_path="b"), name="r")
        assert [f[0] for f in await read_all(src)] == [1, 2]
    assert paths == ["/api/x/", "/api/x/?offset=1"]


@pytest.mark.parametrize(
    ("status", "body", "ctype", "expect"),
    [
        (500, "boom: Authorization was Bearer tok-SECRET-9f8e7d", "text/plain", "HTTP 500"),
        (403, '{"detail": "Invalid token tok-SECRET-9f8e7d"}', "application/json", "HTTP 403"),
        (200, "<html>login page</html>", "text/html", "not JSON"),
    ],
)
async def test_http_errors_never_show_the_token(
    status: int, body: str, ctype: str, expect: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, status=status, content_type=ctype)

    async with serve(handler) as url:
        src = HttpSource(settings(url + "/p?secret_q=1", token=TOKEN), name="rel")
        with pytest.raises(SourceError) as err:
            await read_all(src)
    text = str(err.value)
    assert expect in text and "rel" in text and "/p" in text
    assert TOKEN not in text and "secret_q" not in text


async def test_timeout_is_a_source_error() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response([])

    async with serve(handler) as url:
        src = HttpSource(settings(url, token=TOKEN, timeout=0.3), name="rel")
        with pytest.raises(SourceError, match="timed out") as err:
            await asyncio.wait_for(read_all(src), 5)
    assert TOKEN not in str(err.value)


async def test_connection_refused_is_a_source_error() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response([])

    async with serve(handler) as url:
        pass  # closed again: nothing listens there now
    src = HttpSource(settings(url, token=TOKEN), name="rel")
    with pytest.raises(SourceError, match=r"GET http://127\.0\.0\.1"):
        await read_all(src)


async def test_pagination_loop_and_max_pages() -> None:
    async def loop(request: web.Request) -> web.Response:
        return web.json_response({"results": [], "next": str(request.url)})

    async with serve(loop) as url:
        with pytest.raises(SourceError, match="loops back"):
            await read_all(HttpSource(settings(url), name="r"))

    async def endless(request: web.Request) -> web.Response:
        n = int(request.query.get("n", "0"))
        return web.json_response({"results": [], "next": str(request.url.with_query(n=n + 1))})

    async with serve(endless) as url:
        with pytest.raises(SourceError, match="max_pages=5"):
            await read_all(HttpSource(settings(url, max_pages=5), name="r"))


async def test_token_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        got.append(request.headers.get("X-Api-Key", ""))
        return web.json_response([])

    token_file = tmp_path / "token"
    token_file.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv("SYNCD_TEST_TOKEN", "from-env")
    async with serve(handler) as url:
        common = {"auth_header": "X-Api-Key", "auth_scheme": ""}
        await read_all(HttpSource(settings(url, token_file=token_file, **common), name="r"))
        await read_all(HttpSource(settings(url, token_env="SYNCD_TEST_TOKEN", **common), name="r"))
        monkeypatch.delenv("SYNCD_TEST_TOKEN")
        with pytest.raises(SourceError, match="SYNCD_TEST_TOKEN"):
            await read_all(HttpSource(settings(url, token_env="SYNCD_TEST_TOKEN"), name="r"))
        with pytest.raises(SourceError, match="unreadable"):
            await read_all(HttpSource(settings(url, token_file=tmp_path / "nope"), name="r"))
    assert got == ["from-file", "from-env"]


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match="one of token, token_file, token_env"):
        settings("http://x", token="a", token_env="B")
    with pytest.raises(ValidationError, match="bad path"):
        settings("http://x", source_path="a..b")
    with pytest.raises(ValidationError, match="http"):
        settings("ftp://x")
    with pytest.raises(ValidationError, match="extra"):
        settings("http://x", tokne="typo")
    s = settings("http://x", token=TOKEN)
    assert TOKEN not in repr(s) and TOKEN not in json.dumps(s.model_dump(mode="json"))


def test_path_expressions() -> None:
    doc = {"a": [{"b": {"c": 1}}, {"b": {"c": 2}}]}
    assert get_path(doc, compile_path("a[1].b.c")) == 2
    assert get_path(doc, compile_path("a[-1].b")) == {"c": 2}
    assert get_path(doc, compile_path("")) is doc
    for bad in ("a[x]", "a..b", "a.[0]"):
        with pytest.raises(ValueError):
            compile_path(bad)

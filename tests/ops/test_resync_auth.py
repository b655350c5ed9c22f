"""Guards only a person lifts: POST /resync lifts the prune guards only with the resync
token; without credentials it is a plain resync; a wrong or uncheckable one does nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from syncd.config.settings import OpsSettings
from syncd.runtime.control import request_resync
from syncd.runtime.health import Health
from syncd.runtime.metrics import Metrics
from syncd.runtime.ops import OpsServer
from syncd.runtime.resyncauth import ResyncGrant, grant
from tests.helpers import capture_logs

TOKEN = "k7-Very-Secret-token"


@pytest.mark.parametrize(
    ("header", "token", "expected"),
    [
        (None, None, ResyncGrant.PLAIN),
        (None, TOKEN, ResyncGrant.REFUSED),  # a token configured: every request needs it
        (f"Bearer {TOKEN}", TOKEN, ResyncGrant.LIFT),
        (f"bearer   {TOKEN} ", TOKEN, ResyncGrant.LIFT),
        (f"Bearer {TOKEN}", None, ResyncGrant.REFUSED),  # no token: nothing can lift
        (f"Bearer {TOKEN}x", TOKEN, ResyncGrant.REFUSED),
        (f"Bearer {TOKEN[:-1]}", TOKEN, ResyncGrant.REFUSED),
        ("Bearer ", TOKEN, ResyncGrant.REFUSED),
        ("Bearer", TOKEN, ResyncGrant.REFUSED),
        (f"Basic {TOKEN}", TOKEN, ResyncGrant.REFUSED),
        (TOKEN, TOKEN, ResyncGrant.REFUSED),
        ("Bearer \udcff\u00e9", TOKEN, ResyncGrant.REFUSED),
        ("", TOKEN, ResyncGrant.REFUSED),
    ],
)
def test_grant(header: str | None, token: str | None, expected: ResyncGrant) -> None:
    decided, why = grant(header, token.encode() if token is not None else None)
    assert decided is expected and (why is None) == (expected is not ResyncGrant.REFUSED)
    assert TOKEN not in str(why)


def test_beyond_loopback_a_plain_resync_needs_the_token() -> None:
    assert grant(None, None, trusted=False)[0] is ResyncGrant.REFUSED
    assert grant(f"Bearer {TOKEN}", TOKEN.encode(), trusted=False)[0] is ResyncGrant.LIFT


class Calls:
    def __init__(self) -> None:
        self.plain = 0
        self.lift = 0


async def serve(token: str | None) -> tuple[OpsServer, str, Calls]:
    calls = Calls()

    def plain() -> None:
        calls.plain += 1

    def lift() -> None:
        calls.lift += 1

    server = OpsServer(
        Health(max_age=1),
        Metrics(process_metrics=False),
        plain,
        port=0,
        resync_token=token,
        on_lift=lift,
    )
    return server, await server.start(), calls


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, auth: str | None) -> tuple[int, dict]:  # type: ignore[type-arg]
    headers = {"Authorization": auth} if auth is not None else {}
    async with http.post(url + "/resync", headers=headers) as resp:
        return resp.status, await resp.json()


async def test_without_credentials_a_resync_lifts_no_guard(http: aiohttp.ClientSession) -> None:
    server, url, calls = await serve(None)
    try:
        status, body = await post(http, url, None)
    finally:
        await server.stop()
    assert status == 202 and body["lifts_guards"] is False
    assert (calls.plain, calls.lift) == (1, 0)


async def test_the_token_lifts_the_guards(http: aiohttp.ClientSession) -> None:
    server, url, calls = await serve(TOKEN)
    try:
        status, body = await post(http, url, f"Bearer {TOKEN}")
    finally:
        await server.stop()
    assert status == 202 and body["lifts_guards"] is True
    assert (calls.plain, calls.lift) == (0, 1)


@pytest.mark.parametrize(
    "auth", [f"Bearer {TOKEN}0", "Bearer guess", f"Basic {TOKEN}", "Bearer", "x" * 4000]
)
async def test_a_wrong_credential_does_nothing_and_is_never_logged(
    http: aiohttp.ClientSession, auth: str
) -> None:
    server, url, calls = await serve(TOKEN)
    try:
        with capture_logs() as logs:
            status, body = await post(http, url, auth)
    finally:
        await server.stop()
    assert status == 403 and body["ok"] is False
    assert (calls.plain, calls.lift) == (0, 0)
    assert [line["event"] for line in logs] == ["resync_refused"]
    presented = auth.partition(" ")[2] or auth
    assert TOKEN not in repr(logs) + repr(body)
    assert presented == "" or presented == "Bearer" or presented not in repr(logs)


async def test_with_no_token_configured_nothing_lifts(http: aiohttp.ClientSession) -> None:
    server, url, calls = await serve(None)
    try:
        refused, body = await post(http, url, f"Bearer {TOKEN}")
        plain, _ = await post(http, url, None)
    finally:
        await server.stop()
    assert refused == 403 and "no resync token is configured" in body["reason"]
    assert plain == 202 and (calls.plain, calls.lift) == (1, 0)


async def test_syncd_resync_sends_the_token(tmp_path: Path) -> None:
    server, url, calls = await serve(TOKEN)
    try:
        msg = await asyncio.to_thread(request_resync, pidfile=None, ops_url=url, token=TOKEN)
    finally:
        await server.stop()
    assert msg == f"resync requested via {url}/resync" and calls.lift == 1
    server, url, calls = await serve(None)
    try:
        plain = await asyncio.to_thread(request_resync, pidfile=None, ops_url=url)
    finally:
        await server.stop()
    assert "prune guards stay" in plain and calls.plain == 1
    assert TOKEN not in msg + plain


def test_the_token_comes_from_a_file_or_a_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert OpsSettings().resync_token is None
    (tmp_path / "tok").write_text(f"{TOKEN}\n")
    settings = OpsSettings(resync_token_file=tmp_path / "tok")
    assert settings.resync_token is not None
    assert settings.resync_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "resync_token").write_text(TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    token = OpsSettings().resync_token
    assert token is not None and token.get_secret_value() == TOKEN
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        OpsSettings(resync_token_file=tmp_path / "empty")

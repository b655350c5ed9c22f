"""NetBox webhooks: signature, payloads as NetBox serialises them, debounce, the HTTP endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import aiohttp
import pytest
from src_helpers import NETBOX_FIXTURES
from structlog.testing import capture_logs

from syncd.config.load import load_settings
from syncd.config.settings import ConfigError, NetBoxHookSettings
from syncd.runtime.health import Health
from syncd.runtime.metrics import Metrics
from syncd.runtime.ops import OpsServer
from syncd.runtime.push import PushSources
from syncd.runtime.webhooks import (
    Debouncer,
    NetBoxWebhook,
    PayloadError,
    PeerLogLimiter,
    parse_event,
    sign,
    signature_ok,
)

WEBHOOKS = NETBOX_FIXTURES / "webhooks"
SECRET = "nb-hook-secret-0123"


def payload(name: str) -> bytes:
    return (WEBHOOKS / f"{name}.json").read_bytes()


# -- signature -----------------------------------------------------------------------


def test_signature_is_netbox_generate_signature() -> None:
    body = payload("cable_created")
    # extras/webhooks.py: hmac.new(key=secret.encode('utf8'), msg=body, digestmod=sha512)
    netbox = hmac.new(key=SECRET.encode("utf8"), msg=body, digestmod=hashlib.sha512).hexdigest()
    assert sign(body, SECRET) == netbox
    assert signature_ok(body, netbox, SECRET)
    assert signature_ok(body, netbox.upper(), SECRET)  # hex case does not matter


@pytest.mark.parametrize(
    "given",
    [
        None,
        "",
        "00",
        sign(b"other body", SECRET),
        sign(payload("cable_created"), "wrong"),
        "é" * 128,
    ],
)
def test_wrong_or_missing_signature_fails(given: str | None) -> None:
    assert not signature_ok(payload("cable_created"), given, SECRET)


def test_a_body_changed_after_signing_fails() -> None:
    body = payload("cable_created")
    good = sign(body, SECRET)
    assert not signature_ok(body.replace(b'"created"', b'"deleted"', 1), good, SECRET)


# -- payloads ------------------------------------------------------------------------


def test_payloads_parse_as_netbox_sends_them() -> None:
    created = parse_event(payload("cable_created"))
    assert (created.event, created.object_type, created.object_id) == ("created", "dcim.cable", 12)
    assert created.relevant
    deleted = parse_event(payload("cable_deleted"))
    assert (deleted.event, deleted.relevant) == ("deleted", True)
    site = parse_event(payload("site_updated"))
    assert site.object_type == "dcim.site" and not site.relevant
    legacy = parse_event(payload("cable_created_netbox43"))  # "model": "cable", no object_type
    assert legacy.object_type == "dcim.cable" and legacy.relevant


def test_fixtures_are_netbox_json_dumps_bytes() -> None:
    # Webhook.render_body(): json.dumps(context) with default separators, ASCII only.
    for path in WEBHOOKS.glob("*.json"):
        if path.name.endswith("_rest.json"):
            continue
        raw = path.read_bytes()
        assert json.dumps(json.loads(raw)).encode("utf8") == raw, path.name
        keys = list(json.loads(raw))
        assert keys[:2] == ["event", "timestamp"] and "data" in keys and "snapshots" in keys


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"object_type": "dcim.cable"}', "no 'event'"),
        (b'{"event": "created"}', "no 'object_type'"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_bad_payloads_say_why(body: bytes, why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        parse_event(body)


def test_job_events_are_not_relevant() -> None:
    doc = json.loads(payload("cable_created"))
    doc["event"] = "job_ended"
    assert not parse_event(json.dumps(doc).encode()).relevant


# -- log limiter and debouncer ----------------------------------------------------------


def test_peer_log_limiter_once_per_window_per_peer() -> None:
    limiter = PeerLogLimiter(window=60, max_peers=3)
    assert limiter.allow("10.0.0.1", 0)
    assert not limiter.allow("10.0.0.1", 30)
    assert not limiter.allow("10.0.0.1", 59.9)
    assert limiter.allow("10.0.0.2", 30)
    assert limiter.take_suppressed("10.0.0.1") == 2
    assert limiter.allow("10.0.0.1", 60)
    # Bounded: a flood of addresses never grows the table past max_peers.
    for i in range(100):
        limiter.allow(f"192.0.2.{i}", 61 + i * 0.001)
    assert len(limiter._last) <= 3


async def test_debouncer_coalesces_a_burst_into_one_call() -> None:
    fired: list[int] = []
    done = asyncio.Event()

    def fire(n: int) -> None:
        fired.append(n)
        done.set()

    debouncer = Debouncer(fire, quiet=0.05, max_delay=5)
    for _ in range(500):
        debouncer.poke()
    async with asyncio.timeout(10):
        await done.wait()
    assert fired == [500] and not debouncer.pending
    debouncer.poke()
    done.clear()
    async with asyncio.timeout(10):
        await done.wait()
    assert fired == [500, 1]


async def test_debouncer_fires_within_max_delay_under_a_steady_stream() -> None:
    fired: list[int] = []
    debouncer = Debouncer(fired.append, quiet=0.2, max_delay=0.3)
    async with asyncio.timeout(10):
        while not fired:  # a poke every 50 ms never leaves 200 ms quiet
            debouncer.poke()
            await asyncio.sleep(0.05)
    debouncer.close()
    assert fired and fired[0] >= 2


async def test_debouncer_close_cancels_the_pending_call() -> None:
    fired: list[int] = []
    debouncer = Debouncer(fired.append, quiet=0.05, max_delay=0.05)
    debouncer.poke()
    debouncer.close()
    await asyncio.sleep(0.2)
    assert fired == []


# -- the endpoint, over real HTTP on loopback -------------------------------------------


class Hook:
    def __init__(self, url: str, hook: NetBoxWebhook, cycles: list[str]) -> None:
        self.url = url
        self.hook = hook
        self.cycles = cycles


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    cycles: list[str] = []
    receiver = NetBoxWebhook(
        SECRET, cycles.append, relations=["dc1"], max_body=64 * 1024, quiet=0.5, max_delay=30
    )
    server = OpsServer(
        Health(max_age=60),
        Metrics(),
        lambda: None,
        port=0,
        routes=[("POST", "/hooks/netbox", receiver.handle)],
    )
    url = await server.start()
    try:
        yield Hook(url + "/hooks/netbox", receiver, cycles)
    finally:
        receiver.close()
        await server.stop()


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, signature: str | None
) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hook-Signature"] = signature
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def settle(hook: Hook) -> None:
    """Wait until the debouncer has nothing pending (bounded)."""
    deadline = asyncio.get_running_loop().time() + 20
    while hook.hook.debouncer.pending:
        assert asyncio.get_running_loop().time() < deadline, "the debouncer never fired"
        await asyncio.sleep(0.02)


async def test_a_signed_webhook_asks_for_one_cycle(hook: Hook) -> None:
    body = payload("cable_created")
    async with aiohttp.ClientSession() as session:
        status, doc = await post(session, hook.url, body, sign(body, SECRET))
    assert (status, doc["action"]) == (202, "cycle")
    await settle(hook)
    assert hook.cycles == ["netbox webhook: 1 change(s) for dc1"]


async def test_a_bulk_edit_of_500_cables_is_one_cycle(hook: Hook) -> None:
    body = payload("cable_created")
    signature = sign(body, SECRET)
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(
            *(post(session, hook.url, body, signature) for _ in range(500))
        )
    assert {status for status, _ in results} == {202}
    await settle(hook)
    assert len(hook.cycles) == 1 and hook.hook.counts.accepted == 500


async def test_unsigned_and_wrongly_signed_get_403_start_nothing_log_once(hook: Hook) -> None:
    body = payload("cable_created")
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as session:
            for signature in (None, "", sign(body, "guess"), "zz", None):
                status, doc = await post(session, hook.url, body, signature)
                assert status == 403 and doc["ok"] is False
    # Nothing fired and nothing is scheduled to: a refused request never pokes.
    assert not hook.hook.debouncer.pending
    assert hook.cycles == [] and hook.hook.debouncer.fired == 0
    refused = [line for line in logs if line["event"] == "webhook_refused"]
    assert len(refused) == 1 and refused[0]["peer"] == "127.0.0.1"
    assert SECRET not in json.dumps(logs, default=str)
    assert hook.hook.counts.refused == 5


async def test_oversized_body_gets_413_before_anything_else(hook: Hook) -> None:
    body = b'{"event": "created", "pad": "' + b"x" * (70 * 1024) + b'"}'
    async with aiohttp.ClientSession() as session:
        status, _ = await post(session, hook.url, body, sign(body, SECRET))

        # chunked, without a Content-Length: the cap holds while reading too
        async def gen() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        async with session.post(
            hook.url, data=gen(), headers={"X-Hook-Signature": sign(body, SECRET)}
        ) as resp:
            chunked_status = resp.status
    assert (status, chunked_status) == (413, 413)
    assert not hook.hook.debouncer.pending and hook.cycles == []


async def test_a_stalled_body_gets_408(hook: Hook) -> None:
    hook.hook.read_timeout = 0.2
    host, port = hook.url.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /hooks/netbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"event": '
    )
    await writer.drain()
    async with asyncio.timeout(20):
        status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"408"
    assert not hook.hook.debouncer.pending and hook.cycles == []


async def test_signed_bad_json_gets_400_and_irrelevant_models_are_ignored(hook: Hook) -> None:
    bad = b'{"event": "created", "object_type": '
    site = payload("site_updated")
    async with aiohttp.ClientSession() as session:
        status_bad, doc_bad = await post(session, hook.url, bad, sign(bad, SECRET))
        status_site, doc_site = await post(session, hook.url, site, sign(site, SECRET))
    assert status_bad == 400 and "not JSON" in str(doc_bad["reason"])
    assert (status_site, doc_site["action"]) == (202, "ignored")
    assert not hook.hook.debouncer.pending and hook.cycles == []


# -- configuration ------------------------------------------------------------------------


def _config(tmp_path: Path, hooks: str) -> Path:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f"""
[cmdb]
url = "http://127.0.0.1:1"
app_code = "syncd"
app_secret = "s"

{hooks}

[[relations]]
name = "dc1"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "bk_switch_connect_host"
source = {{ type = "netbox", url = "https://netbox.example/api/", token = "{"t" * 40}" }}
""",
        encoding="utf-8",
    )
    return cfg


def test_secret_from_a_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "hook.secret").write_text(SECRET + "\n", encoding="utf-8")
    settings = load_settings(
        _config(
            tmp_path, '[hooks.netbox]\nsecret_file = "hook.secret"\nurl = "https://netbox.example"'
        )
    )
    hook = settings.hooks.netbox
    assert hook is not None and hook.secret is not None
    assert hook.secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert hook.owns("https://netbox.example/api") and not hook.owns("https://other.example")


def test_secret_from_the_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "netbox_webhook_secret").write_text(SECRET, encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = load_settings(_config(tmp_path, "[hooks.netbox]"))
    assert settings.hooks.netbox is not None and settings.hooks.netbox.secret is not None
    assert settings.hooks.netbox.secret.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("hooks", "why"),
    [
        ("[hooks.netbox]", "systemd credential 'netbox_webhook_secret'"),
        ('[hooks.netbox]\nsecret_file = "nope"', "unreadable"),
        ('[hooks.netbox]\nsecret = ""', "empty"),
        ('[hooks.netbox]\nsecret = "x"\ndebounce = 5', "hooks.netbox.debounce"),
    ],
)
def test_bad_hook_settings_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hooks: str, why: str
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=why):
        load_settings(_config(tmp_path, hooks))


def test_owns_every_netbox_without_url() -> None:
    assert NetBoxHookSettings(secret=SECRET).owns("https://anything.example")  # type: ignore[arg-type]


# -- wiring into the daemon (syncd.runtime.push) --------------------------------------------------


def test_push_sources_route_only_for_a_matching_netbox_relation(tmp_path: Path) -> None:
    cycles: list[tuple[str, list[str]]] = []

    def request(reason: str, relations: Collection[str]) -> None:
        cycles.append((reason, list(relations)))

    none = PushSources(load_settings(_config(tmp_path, "")), request)
    assert none.routes() == [] and none.streams == []
    mine = f'[hooks.netbox]\nsecret = "{SECRET}"\nurl = "https://netbox.example/"'
    push = PushSources(load_settings(_config(tmp_path, mine)), request)
    assert [(m, p) for m, p, _ in push.routes()] == [("POST", "/hooks/netbox")]
    assert push.webhook is not None and push.webhook.relations == ["dc1"]
    push.webhook.on_change("netbox webhook")  # a cycle of the relations it feeds, only
    assert cycles == [("netbox webhook", ["dc1"])]
    other = f'[hooks.netbox]\nsecret = "{SECRET}"\nurl = "https://other.example"'
    with capture_logs() as logs:
        unused = PushSources(load_settings(_config(tmp_path, other)), request)
    assert unused.routes() == []
    assert [line["event"] for line in logs] == ["webhook_unused"]


async def test_no_hook_section_means_no_endpoint() -> None:
    server = OpsServer(Health(max_age=60), Metrics(), lambda: None, port=0)
    url = await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/hooks/netbox", data=b"{}") as resp,
        ):
            assert resp.status == 404
    finally:
        await server.stop()

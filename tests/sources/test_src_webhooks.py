"""NetBox webhooks: signature, real 4.7.3 deliveries and what each names, hostile bodies,
replays, refusal logging, the HTTP endpoint and its configuration."""

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

from syncd.config.hooks import NetBoxHookSettings
from syncd.config.load import load_settings
from syncd.config.settings import ConfigError
from syncd.engine.change import Change
from syncd.runtime.health import Health
from syncd.runtime.hookguard import BodyBudget, RefusalLog
from syncd.runtime.metrics import Metrics
from syncd.runtime.ops import OpsServer
from syncd.runtime.push import PushSources
from syncd.runtime.webhooks import (
    Debouncer,
    NetBoxEvent,
    NetBoxWebhook,
    PayloadError,
    event_change,
    parse_event,
    sign,
    signature_ok,
)
from tests.helpers import NETBOX_473_WEBHOOKS, delivery

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


C = frozenset
RECORDED = {
    # number: what applying it reads (None: a full read)
    "001": Change(cables=C({10})),  # cable created
    "002": Change(cables=C({10})),  # its A end: data.cable and postchange.cable
    "003": Change(cables=C({10})),
    "016": Change(cables=C({10})),  # cable deleted
    "017": Change(cables=C({10})),  # its ends: prechange.cable only
    "018": Change(cables=C({10})),
    "019": Change(cables=C({11})),  # the old B end of a move: prechange.cable
    "020": Change(cables=C({11})),  # the new B end
    "021": Change(cables=C({11})),  # the cable itself
    "053": Change(cables=C({20})),  # bulk update, one delivery per cable
    "055": Change(cables=C({20})),  # bulk delete
    "064": Change(),  # an interface without a cable: nothing to do
    "065": Change(devices=C({25})),  # a device: its cables are read again
    "072": None,  # a site: only a full read can tell
    "073": Change(),  # a new interface, no cable
}


def test_every_recorded_4_7_3_delivery_names_what_it_changed() -> None:
    found = sorted(p.name[:3] for p in NETBOX_473_WEBHOOKS.glob("[0-9]*.json"))
    assert found == sorted(RECORDED)
    for number, expected in RECORDED.items():
        doc = delivery(number)
        assert doc["signature_matches_hmac_sha512_of_body"] is True
        assert event_change(parse_event(doc["body"])) == expected, number


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


async def test_refusals_are_logged_at_once_then_once_a_window_with_their_count() -> None:
    refusals = RefusalLog(window=0.2, max_peers=3)
    with capture_logs() as logs:
        for _ in range(5):
            refusals.refused("10.0.0.1", reason="wrong")
        refusals.refused("10.0.0.2", reason="wrong")
        await asyncio.sleep(0.5)  # no further refusal: the count still gets its line
        for i in range(100):  # a flood of addresses is folded, never grows the table
            refusals.refused(f"192.0.2.{i}", reason="x")
        refusals.close()
    lines = [(line["peer"], line["refused"]) for line in logs if line["event"] == "webhook_refused"]
    assert lines[:3] == [("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.1", 4)]
    assert len(refusals._last) <= 4 and ("others", 1) in lines


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
    def __init__(self, url: str, hook: NetBoxWebhook, events: list[NetBoxEvent]) -> None:
        self.url = url
        self.hook = hook
        self.events = events


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    events: list[NetBoxEvent] = []

    def on_event(event: NetBoxEvent) -> str:
        events.append(event)
        return "full_read" if event_change(event) is None else "applied"

    receiver = NetBoxWebhook(SECRET, on_event, relations=["dc1"], max_body=64 * 1024)
    server = OpsServer(
        Health(max_age=60),
        Metrics(),
        lambda: None,
        port=0,
        routes=[("POST", "/hooks/netbox", receiver.handle)],
    )
    url = await server.start()
    try:
        yield Hook(url + "/hooks/netbox", receiver, events)
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


async def test_a_recorded_delivery_with_its_real_headers_is_applied(hook: Hook) -> None:
    doc = delivery("001")
    headers = {k: v for k, v in doc["headers"] if k.lower() not in ("content-length", "host")}
    headers["X-Hook-Signature"] = sign(doc["body"], SECRET)  # re-signed with the test secret
    async with (
        aiohttp.ClientSession() as session,
        session.post(hook.url, data=doc["body"], headers=headers) as resp,
    ):
        status, answer = resp.status, await resp.json()
    assert (status, answer["action"]) == (202, "applied")
    assert [e.cables for e in hook.events] == [frozenset({10})]
    assert hook.hook.counts == {"applied": 1}


async def test_a_captured_delivery_replayed_ten_times_is_taken_once(hook: Hook) -> None:
    body = delivery("016")["body"]
    signature = sign(body, SECRET)
    async with aiohttp.ClientSession() as session:
        answers = [await post(session, hook.url, body, signature) for _ in range(10)]
    assert [a[1]["action"] for a in answers] == ["applied"] + ["duplicate"] * 9
    assert len(hook.events) == 1
    assert hook.hook.counts == {"applied": 1, "duplicate": 9}


async def test_unsigned_and_wrongly_signed_get_403_start_nothing_log_once(hook: Hook) -> None:
    body = payload("cable_created")
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as session:
            for signature in (None, "", sign(body, "guess"), "zz", None):
                status, doc = await post(session, hook.url, body, signature)
                assert status == 403 and doc["ok"] is False
    assert hook.events == []
    refused = [line for line in logs if line["event"] == "webhook_refused"]
    assert len(refused) == 1 and refused[0]["peer"] == "127.0.0.1"
    assert SECRET not in json.dumps(logs, default=str)
    assert hook.hook.counts == {"unsigned": 3, "bad_signature": 2}


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
    assert hook.events == [] and hook.hook.counts == {"too_large": 2}


async def test_bodies_beyond_the_shared_budget_are_refused_busy(hook: Hook) -> None:
    hook.hook.budget = BodyBudget(4096)
    body = delivery("065")["body"]  # a device delivery: ~6 KB
    assert len(body) > 4096
    async with aiohttp.ClientSession() as session:
        status, doc = await post(session, hook.url, body, sign(body, SECRET))
    assert status == 503 and "resend" in str(doc["reason"])
    assert hook.hook.budget.held == 0 and hook.events == []


async def test_a_stalled_body_gets_408(hook: Hook) -> None:
    hook.hook.read_timeout = 0.2
    host, port = hook.url.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /hooks/netbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Hook-Signature: 00\r\nContent-Length: 1000\r\n\r\n" + b'{"event": '
    )
    await writer.drain()
    async with asyncio.timeout(20):
        status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"408"
    assert hook.events == [] and hook.hook.budget.held == 0


async def test_an_unsigned_body_is_refused_before_it_is_read(hook: Hook) -> None:
    """No signature header: 403 at once, while the client is still sending."""
    host, port = hook.url.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /hooks/netbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1048576\r\n\r\n" + b"x" * 1000
    )
    await writer.drain()
    async with asyncio.timeout(20):
        status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"403" and hook.hook.budget.peak == 0


async def test_signed_bad_json_gets_400_and_other_models_ask_for_a_full_read(hook: Hook) -> None:
    bad = b'{"event": "created", "object_type": '
    site = delivery("072")["body"]
    async with aiohttp.ClientSession() as session:
        status_bad, doc_bad = await post(session, hook.url, bad, sign(bad, SECRET))
        status_site, doc_site = await post(session, hook.url, site, sign(site, SECRET))
    assert status_bad == 400 and "not JSON" in str(doc_bad["reason"])
    assert (status_site, doc_site["action"]) == (202, "full_read")
    assert hook.hook.counts == {"bad_payload": 1, "full_read": 1}


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


@pytest.mark.parametrize(
    ("hooks", "why"),
    [
        (
            f'[ops]\nenabled = false\n[hooks.netbox]\nsecret = "{SECRET}"',
            "hooks.netbox needs a listener",
        ),
        (
            f'[hooks.netbox]\nsecret = "{SECRET}"\nurl = "https://localhost"',
            "matches no netbox source",
        ),
        ('[hooks]\nlisten = "127.0.0.1"\n[hooks.netbox]\nsecret = "x"', "not host:port"),
        ('[hooks]\nlisten = "127.0.0.1:99999"\n[hooks.netbox]\nsecret = "x"', "not host:port"),
    ],
)
def test_a_hook_that_cannot_work_is_a_config_error(tmp_path: Path, hooks: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_settings(_config(tmp_path, hooks))


def test_check_config_exits_78_for_a_hook_without_a_listener(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = _config(tmp_path, f'[ops]\nenabled = false\n[hooks.netbox]\nsecret = "{SECRET}"')
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78 and "hooks.netbox needs a listener" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_a_listener_of_its_own_keeps_the_webhook_off_the_ops_server(tmp_path: Path) -> None:
    text = (
        f'[ops]\nenabled = false\n[hooks]\nlisten = "[::1]:0"\n[hooks.netbox]\nsecret = "{SECRET}"'
    )
    settings = load_settings(_config(tmp_path, text))
    push = PushSources(settings, lambda *_: None)
    assert push.routes() == [] and push.listen == ("::1", 0)


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
    # A model only a full read can judge asks for a cycle of the relations it feeds, only.
    assert push.webhook.on_event(parse_event(delivery("072")["body"])) == "full_read"
    assert cycles == [("netbox webhook: dcim.site updated", ["dc1"])]


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


def test_resync_token_from_a_file_or_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert load_settings(_config(tmp_path, "")).ops.resync_token is None  # optional
    (tmp_path / "resync.token").write_text("tok-1\n", encoding="utf-8")
    settings = load_settings(_config(tmp_path, '[ops]\nresync_token_file = "resync.token"'))
    assert settings.ops.resync_token is not None
    assert settings.ops.resync_token.get_secret_value() == "tok-1"
    assert "tok-1" not in repr(settings)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "resync_token").write_text("tok-2", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    token = load_settings(_config(tmp_path, "")).ops.resync_token
    assert token is not None and token.get_secret_value() == "tok-2"
    with pytest.raises(ConfigError, match="empty"):
        load_settings(_config(tmp_path, '[ops]\nresync_token = ""'))


@pytest.mark.parametrize("ident", [0, -1, 2**63, 10**30, True, "12", 1.5, None])
def test_an_id_that_is_not_a_netbox_id_names_nothing(ident: object) -> None:
    doc = json.loads(delivery("001")["body"])
    doc["data"]["id"] = ident
    event = parse_event(json.dumps(doc).encode())
    assert event.object_id is None and event.cables == frozenset()
    assert event_change(event) is None  # only a full read can tell


def test_settings_that_no_longer_act_are_named_with_their_successor(tmp_path: Path) -> None:
    from syncd.config.checks import unused_settings

    quiet = load_settings(_config(tmp_path, '[hooks.netbox]\nsecret = "x"\ngather = 0.1'))
    assert unused_settings(quiet) == []
    old = load_settings(
        _config(tmp_path, '[hooks.netbox]\nsecret = "x"\ndebounce = 0.2\nmax_delay = 10')
    )
    warnings = unused_settings(old)
    assert len(warnings) == 2
    assert "hooks.netbox.debounce" in warnings[0] and "hooks.netbox.gather" in warnings[0]
    assert "hooks.netbox.max_delay" in warnings[1] and "hooks.netbox.group_max" in warnings[1]

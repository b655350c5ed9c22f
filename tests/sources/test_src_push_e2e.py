"""Push sources end to end: a real ``syncd run`` process, the simulator, a loopback NetBox.

A signed NetBox webhook (the recorded cable_created body) makes the daemon create the
new cable's pair at once, reading only that cable; a wrongly signed one starts nothing.
An lldpd watch stream (a script printing lldpcli's watch output) starts a cycle for a
switch running lldpd, and on SIGTERM the stream's process is gone with the daemon.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from src_helpers import HERE, NETBOX_FIXTURES, load_recording
from test_src_lldpd_watch import _alive
from test_src_resolver import cmdb_fixture

from syncd.cmdb.client import CmdbClient
from syncd.config.load import load_settings
from syncd.runtime.webhooks import sign
from tests.helpers import ASST, Proc, start_simulator
from tests.indaemon import InProcessDaemon, run_daemon

pytestmark = pytest.mark.slow

SECRET = "nb-hook-secret-0123"
WEBHOOKS = NETBOX_FIXTURES / "webhooks"


class FakeNetBox:
    """The recorded dc1 cables and devices over loopback; ``add_cable_12`` adds C-012."""

    def __init__(self) -> None:
        doc = load_recording("cables_dc1")
        self.cables: list[dict[str, Any]] = []
        self.devices: dict[int, dict[str, Any]] = {}
        for ex in doc["exchanges"]:
            if ex["path"] == "/api/dcim/cables/":
                self.cables.extend(ex["body"]["results"])
            elif ex["path"] == "/api/dcim/devices/":
                self.devices.update({d["id"]: d for d in ex["body"]["results"]})
        self.lock = threading.Lock()
        self.requests = 0

    def add_cable_12(self) -> None:
        cable = json.loads((WEBHOOKS / "cable_12_rest.json").read_text("utf-8"))
        with self.lock:
            self.cables.append(cable)

    def answer(self, path: str, query: dict[str, list[str]]) -> dict[str, Any] | None:
        with self.lock:
            self.requests += 1
            if path == "/api/dcim/cables/":
                # NetBox's id= and device_id= filters (the reads a webhook's change makes)
                ids = {int(i) for i in query.get("id", [])}
                owners = {int(i) for i in query.get("device_id", [])}
                results = [
                    c
                    for c in self.cables
                    if (not ids or c["id"] in ids) and (not owners or _ends(c) & owners)
                ]
            elif path == "/api/dcim/devices/":
                ids = {int(i) for i in query.get("id", [])}
                results = [d for i, d in sorted(self.devices.items()) if i in ids]
            else:
                return None
        return {"count": len(results), "next": None, "previous": None, "results": results}


def _ends(cable: dict[str, Any]) -> set[int]:
    terms = [*cable.get("a_terminations", ()), *cable.get("b_terminations", ())]
    return {t["object"]["device"]["id"] for t in terms if t.get("object", {}).get("device")}


@pytest.fixture
def netbox() -> Iterator[tuple[FakeNetBox, str]]:
    fake = FakeNetBox()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            doc = fake.answer(parts.path, parse_qs(parts.query))
            body = json.dumps(doc if doc is not None else {"detail": "Not found."}).encode()
            self.send_response(200 if doc is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sim_url(tmp_path: Path, procs: list[Proc]) -> str:
    fixture = tmp_path / "cmdb.json"
    fixture.write_text(json.dumps(cmdb_fixture()), encoding="utf-8")
    return start_simulator(procs, fixture)


def config(tmp_path: Path, cmdb: str, relation: str, extra: str = "") -> Path:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f"""
[cmdb]
url = "{cmdb}"
app_code = "syncd"
app_secret = "s3cret-app"
rate_limit = 500
retry_base = 0.01
retry_cap = 0.2

[state]
path = "{tmp_path / "state.db"}"

[sync]
interval = 3600

[ops]
host = "127.0.0.1"
port = 0

{extra}

[[relations]]
name = "dc1"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "{ASST}"
source_key = "bk_inst_name"
target_key = "bk_host_name"
{relation}
""",
        encoding="utf-8",
    )
    return cfg


def cmdb_pairs(cfg: Path) -> set[tuple[int, int]]:
    async def read() -> set[tuple[int, int]]:
        async with CmdbClient(load_settings(cfg).cmdb) as client:
            out: set[tuple[int, int]] = set()
            async for page in client.iter_associations("bk_switch", ASST):
                out.update((s, d) for s, d, _ in page)
            return out

    return asyncio.run(read())


def post(url: str, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hook-Signature"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def created(src: int, dst: int) -> Any:
    return lambda l: (
        l.get("event") == "pair"
        and l.get("outcome") == "created"
        and (l.get("bk_inst_id"), l.get("bk_asst_inst_id")) == (src, dst)
    )


def test_a_signed_webhook_syncs_a_new_cable_and_a_bad_one_starts_nothing(
    tmp_path: Path, procs: list[Proc], netbox: tuple[FakeNetBox, str]
) -> None:
    fake, nb_url = netbox
    cfg = config(
        tmp_path,
        sim_url(tmp_path, procs),
        f'source = {{ type = "netbox", url = "{nb_url}", token = "{"t" * 40}", '
        'site = ["dc1"], page_size = 1000 }',
        f'[hooks.netbox]\nsecret = "{SECRET}"\nurl = "{nb_url}/"',
    )

    def drive(daemon: InProcessDaemon) -> None:
        """In this process (tests/indaemon.py): the hook and the change it applies are in
        question, not the process."""
        ops = daemon.wait_for(lambda l: l.get("event") == "ops_listening")["url"]
        daemon.wait_for(lambda l: l.get("event") == "cycle")
        assert (1, 1004) not in cmdb_pairs(cfg)
        hook = f"{ops}/hooks/netbox"

        fake.add_cable_12()  # the cable exists in NetBox, NetBox's worker sends its webhook
        body = (WEBHOOKS / "cable_created.json").read_bytes()
        mark = len(daemon.lines)
        assert post(hook, body, sign(body, "not the secret")) == 403
        assert post(hook, body, None) == 403
        assert post(hook, body, sign(body, SECRET)) == 202
        daemon.wait_for(created(1, 1004), start=mark, timeout=20)
        assert (1, 1004) in cmdb_pairs(cfg)
        # Applied at once: the cable read by id, no cycle, no full read of NetBox.
        assert not [l for l in daemon.lines[mark:] if l.get("event") == "cycle_requested"]
        change = next(l for l in daemon.lines[mark:] if l.get("event") == "change")
        assert change["cables"] == [12] and change["created"] == 1
        refused = [l for l in daemon.lines[mark:] if l.get("event") == "webhook_refused"]
        assert len(refused) == 1  # the first at once, the next with their count a minute later
        assert SECRET not in "\n".join(daemon.raw)

        assert daemon.stop() == 0

    run_daemon(cfg, drive)


def test_lldpd_watch_on_a_switch_starts_a_cycle_and_dies_with_the_daemon(
    tmp_path: Path, procs: list[Proc]
) -> None:
    neighbors = tmp_path / "neighbors.json"
    neighbors.write_text('{"lldp": {}}', encoding="utf-8")  # nothing cabled yet
    show = tmp_path / "show.py"
    show.write_text(
        f"import sys; sys.stdout.write(open({str(neighbors)!r}).read())\n", encoding="utf-8"
    )
    go, pid_file = tmp_path / "go", tmp_path / "watch.pid"
    watch = tmp_path / "watch.py"
    watch.write_text(
        textwrap.dedent(
            f"""
            import os, pathlib, sys, time
            pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))
            while not pathlib.Path({str(go)!r}).exists():
                time.sleep(0.05)
            sys.stdout.write(open({str(HERE / "fixtures/lldpd/watch_leaf-s1.txt")!r}).read())
            sys.stdout.flush()
            time.sleep(600)
            """
        ),
        encoding="utf-8",
    )
    py = sys.executable
    cfg = config(
        tmp_path,
        sim_url(tmp_path, procs),
        f'source = {{ type = "command", argv = ["{py}", "{show}"], format = "lldpd", '
        f'local_name = "sw-b", local_side = "source", watch = true, '
        f'watch_argv = ["{py}", "{watch}"] }}',
    )
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    daemon.wait_for(lambda l: l.get("event") == "cycle")
    daemon.wait_for(lambda l: l.get("event") == "stream_started")
    assert cmdb_pairs(cfg) == set()

    # srv-04 gets cabled to sw-b: lldpd's table changes, then lldpcli watch reports it.
    leaf = json.loads((HERE / "fixtures/lldpd/leaf-s1_one_neighbor.json").read_text("utf-8"))
    port = leaf["lldp"]["interface"]["swp7"]
    port["chassis"] = {"srv-04": port["chassis"]["srv-01.example.net"]}
    neighbors.write_text(json.dumps(leaf), encoding="utf-8")
    mark = len(daemon.lines)
    go.touch()
    daemon.wait_for(created(2, 1004), start=mark, timeout=20)
    kinds = [l.get("kind") for l in daemon.lines[mark:] if l.get("event") == "stream_notification"]
    assert kinds[:1] == ["added"]
    reasons = [l["reason"] for l in daemon.lines[mark:] if l.get("event") == "cycle_requested"]
    assert reasons and reasons[0].startswith("dc1: ") and "change(s) from python" in reasons[0]
    assert cmdb_pairs(cfg) == {(2, 1004)}

    watcher = int(pid_file.read_text())
    assert _alive(watcher)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert not _alive(watcher)


UPLINK = "bk_switch_uplink_host"


def test_a_webhook_touches_only_the_netbox_relation_and_sighup_runs_all(
    tmp_path: Path, procs: list[Proc], netbox: tuple[FakeNetBox, str]
) -> None:
    fake, nb_url = netbox
    doc = cmdb_fixture()
    doc["model_associations"].append(
        {**doc["model_associations"][0], "bk_obj_asst_id": UPLINK, "bk_asst_id": "uplink"}
    )
    fixture = tmp_path / "cmdb.json"
    fixture.write_text(json.dumps(doc), encoding="utf-8")
    topology = tmp_path / "lab.csv"
    topology.write_text("bk_inst_id,bk_asst_inst_id\n4,1007\n", encoding="utf-8")
    cfg = config(
        tmp_path,
        start_simulator(procs, fixture),
        f'source = {{ type = "netbox", url = "{nb_url}", token = "{"t" * 40}", '
        'site = ["dc1"], page_size = 1000 }',
        f'[hooks.netbox]\nsecret = "{SECRET}"',
    )
    cfg.write_text(
        cfg.read_text("utf-8")
        + f"""
[[relations]]
name = "lab"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "{UPLINK}"
source = {{ type = "file", path = "{topology}" }}
""",
        encoding="utf-8",
    )
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    ops = daemon.wait_for(lambda l: l.get("event") == "ops_listening")["url"]
    first = daemon.wait_for(lambda l: l.get("event") == "cycle")
    assert "only" not in first
    ran = {l["relation"] for l in daemon.lines if l.get("event") == "relation"}
    assert ran == {"dc1", "lab"}

    fake.add_cable_12()
    body = (WEBHOOKS / "cable_created.json").read_bytes()
    mark = len(daemon.lines)
    for _ in range(3):  # the same delivery thrice: taken once, the others are replays
        assert post(f"{ops}/hooks/netbox", body, sign(body, SECRET)) in (200, 202)
    daemon.wait_for(created(1, 1004), start=mark, timeout=20)
    change = daemon.wait_for(lambda l: l.get("event") == "change", start=mark)
    assert change["relation"] == "dc1" and change["cables"] == [12]
    assert [l.get("action") for l in daemon.lines[mark:] if l.get("event") == "cycle"] == []

    # A model only a full read can judge (a site): a cycle of the netbox relation only.
    mark = len(daemon.lines)
    site = (WEBHOOKS / "site_updated.json").read_bytes()
    assert post(f"{ops}/hooks/netbox", site, sign(site, SECRET)) == 202
    cycle = daemon.wait_for(lambda l: l.get("event") == "cycle", start=mark)
    assert cycle["only"] == ["dc1"]
    after = daemon.lines[mark:]
    assert [l["relation"] for l in after if l.get("event") == "relation"] == ["dc1"]
    requested = [l for l in after if l.get("event") == "cycle_requested"]
    assert [(r["reason"], r["relations"]) for r in requested] == [
        ("netbox webhook: dcim.site updated", ["dc1"])
    ]

    # SIGHUP: a resync of every relation.
    mark = len(daemon.lines)
    daemon.signal(signal.SIGHUP)
    cycle = daemon.wait_for(lambda l: l.get("event") == "cycle", start=mark)
    assert "only" not in cycle
    ran = {l["relation"] for l in daemon.lines[mark:] if l.get("event") == "relation"}
    assert ran == {"dc1", "lab"}
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0

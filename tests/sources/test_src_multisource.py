"""Several sources for one relation: a recorded NetBox and two lldpd hosts at once.

The NetBox stand-in serves the recorded dc1 cables over loopback; each lldpd host is a
real child process printing lldpcli's JSON (built from the captured fixture), or
exiting 3 while a ``.fail`` file sits next to its document. The CMDB is the simulator.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from src_helpers import HERE, replay_netbox
from test_src_resolver import cmdb_fixture

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cli import main
from syncd.commands.planview import plan_document, render_text
from syncd.config.load import load_settings
from syncd.config.settings import ConfigError, Settings
from syncd.engine.report import RelationReport
from syncd.runtime.push import PushSources
from syncd.runtime.webhooks import parse_event
from syncd.support import log as syncd_log
from tests.helpers import ASST, capture_logs, engine_for

LLDPD = HERE / "fixtures" / "lldpd"
SW = {"sw-a": 1, "sw-b": 2, "sw-c": 3, "sw-d": 4}
SRV = {f"srv-{i:02d}": 1000 + i for i in range(1, 8) if i != 6}
NETBOX_PAIRS = {(1, 1001), (1, 1002), (2, 1002), (2, 1003), (3, 1004), (3, 1005), (3, 1003)}
"""The dc1 cables (srv-06 is not in the CMDB: unresolved)."""

SHOW = """
import os, sys
doc = sys.argv[1]
if os.path.exists(doc + ".fail"):
    sys.stderr.write("lldpd: unable to connect to /run/lldpd.socket\\n")
    sys.exit(3)
sys.stdout.write(open(doc).read())
"""


def lldpd_doc(neighbors: list[str | None]) -> dict[str, Any]:
    """``lldpcli -f json show neighbors`` of a host, one port per neighbour (None: a
    neighbour that announced no name), from the captured srv-01 document."""
    capture = json.loads((LLDPD / "srv-01_two_switches.json").read_text("utf-8"))
    port = next(iter(capture["lldp"]["interface"][0].values()))
    chassis = next(iter(port["chassis"].values()))
    entries = []
    for i, name in enumerate(neighbors):
        entry = copy.deepcopy(port)
        entry["chassis"] = {name: copy.deepcopy(chassis)} if name else copy.deepcopy(chassis)
        entries.append({f"eth{i}": entry})
    return {"lldp": {"interface": entries}} if entries else {"lldp": {}}


@dataclass
class Host:
    """One lldpd host: what its lldpcli prints, and whether it fails."""

    doc: Path

    def sees(self, *neighbors: str | None) -> None:
        self.doc.write_text(json.dumps(lldpd_doc(list(neighbors))), encoding="utf-8")

    def fail(self, failing: bool = True) -> None:
        marker = self.doc.with_name(self.doc.name + ".fail")
        if failing:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)


def lldpd_source(tmp_path: Path, name: str, host: str) -> tuple[str, Host]:
    show = tmp_path / "show.py"
    show.write_text(SHOW, encoding="utf-8")
    doc = tmp_path / f"{name}.json"
    table = (
        f'{{ type = "command", name = "{name}", argv = ["{sys.executable}", "{show}", '
        f'"{doc}"], format = "lldpd", local_name = "{host}" }}'
    )
    return table, Host(doc)


def write_cfg(
    tmp_path: Path, cmdb: str, sources: list[str], *, prune: str = "", sync: str = ""
) -> Path:
    cfg = tmp_path / "syncd.toml"
    tables = ",\n    ".join(sources)
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
{sync}

[ops]
enabled = false

[[relations]]
name = "dc"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "{ASST}"
source_key = "bk_inst_name"
target_key = "bk_host_name"
sources = [
    {tables},
]
{prune}
""",
        encoding="utf-8",
    )
    return cfg


PRUNE_NOW = """
[relations.prune]
enabled = true
grace_seconds = 0
grace_cycles = 1
max_fraction = 1.0
"""


@asynccontextmanager
async def simulator() -> AsyncIterator[tuple[Simulator, str]]:
    sim = Simulator(Fixture.from_dict(cmdb_fixture()), SimulatorOptions())
    async with sim.running(host="127.0.0.1", port=0) as url:
        yield sim, url


async def one_cycle(
    settings: Settings, *, resync: bool = False
) -> tuple[RelationReport, list[dict[str, Any]]]:
    async with engine_for(settings) as engine:
        with capture_logs() as logs:
            report = await engine.cycle(resync=resync)
    return report.relations[0], logs


def netbox_source(url: str) -> str:
    return (
        f'{{ type = "netbox", name = "netbox", url = "{url}", token = "{"t" * 40}", '
        'site = ["dc1"], page_size = 4 }'
    )


async def test_netbox_and_two_lldpd_hosts_sync_one_association(tmp_path: Path) -> None:
    a_table, lab_a = lldpd_source(tmp_path, "lab-a", "srv-07")
    b_table, lab_b = lldpd_source(tmp_path, "lab-b", "srv-01")
    lab_a.sees("sw-d", "sw-x")  # sw-x is not in the CMDB
    lab_b.sees("sw-a", "sw-d", None)  # sw-a -- srv-01 is NetBox's too; one unnamed neighbour
    async with replay_netbox("cables_dc1") as nb, simulator() as (sim, url):
        settings = load_settings(
            write_cfg(tmp_path, url, [netbox_source(nb.url), a_table, b_table], prune=PRUNE_NOW)
        )
        # 1. Everyone answers: the union goes in, every fact says where it came from.
        rel, logs = await one_cycle(settings)
        union = NETBOX_PAIRS | {(4, 1007), (1, 1001), (4, 1001)}
        assert sim.pairs(ASST) == union
        assert rel.error is None and rel.desired == len(union) and rel.created == len(union)
        assert sorted((u.source, u.side, u.key) for u in rel.unresolved_keys) == [
            ("lab-a", "source", "sw-x"),
            ("netbox", "target", "srv-06"),
        ]
        origins = {u.source: u.origin for u in rel.unresolved_keys}
        assert origins["netbox"] == f"{nb.url}/dcim/cables/7/"
        assert "stdout record" in origins["lab-a"]
        unresolved = [l for l in logs if l.get("outcome") == "unresolved"]
        assert {(l["source_name"], l["key"]) for l in unresolved} == {
            ("lab-a", "sw-x"),
            ("netbox", "srv-06"),
        }
        bad = [l for l in logs if l["event"] == "bad_record"]
        assert [(l["source_name"], l["relation"]) for l in bad] == [("lab-b", "dc")]
        assert rel.bad_records == 1
        assert rel.prune_blocked is None

        # 2. lab-b fails; lab-a lost sw-d and gained sw-c. lab-a's new pair still goes
        # in, but nothing is pruned while lab-b is silent (its pairs only look absent).
        lab_b.fail()
        lab_a.sees("sw-c", "sw-x")
        rel, logs = await one_cycle(settings)
        assert (3, 1007) in sim.pairs(ASST) and rel.created == 1
        assert rel.deleted == 0 and {(4, 1007), (4, 1001)} <= sim.pairs(ASST)
        assert rel.prune_blocked is not None
        assert rel.prune_blocked.startswith("source 'lab-b' failed this cycle")
        assert "exited with status 3" in rel.prune_blocked
        assert rel.error is not None and "source 'lab-b' failed" in rel.error
        failed = [l for l in logs if l["event"] == "source_failed"]
        assert [(l["source_name"], l["relation"]) for l in failed] == [("lab-b", "dc")]
        assert "lab-b" in next(l for l in logs if l["event"] == "prune_blocked")["reason"]

        # 3. Everyone answers again: pruning proceeds, but lab-a's dropped pair sw-d -- srv-07
        # stays: lab-a still states an unresolved neighbour (sw-x) of srv-07, which could be
        # sw-d under a new name (never prune on uncertainty).
        lab_b.fail(False)
        rel, _ = await one_cycle(settings)
        assert rel.error is None and rel.prune_blocked is None
        assert rel.deleted == 0 and rel.kept_uncertain == 1
        assert (4, 1007) in sim.pairs(ASST)

        # 4. lab-a stops stating sw-x: only lab-a's dropped pair goes (lab-b's pairs were
        # never counted absent while it failed).
        lab_a.sees("sw-c")
        rel, _ = await one_cycle(settings)
        assert rel.error is None and rel.prune_blocked is None
        assert rel.deleted == 1 and rel.kept_uncertain == 0
        assert sim.pairs(ASST) == NETBOX_PAIRS | {(3, 1007), (1, 1001), (4, 1001)}


async def test_the_empty_and_shrink_guards_apply_to_each_source(tmp_path: Path) -> None:
    a_table, lab_a = lldpd_source(tmp_path, "lab-a", "srv-07")
    b_table, lab_b = lldpd_source(tmp_path, "lab-b", "srv-01")
    lab_a.sees("sw-a", "sw-b", "sw-c", "sw-d")
    lab_b.sees("sw-a")
    async with simulator() as (sim, url):
        cfg = write_cfg(
            tmp_path, url, [a_table, b_table], prune=PRUNE_NOW, sync="empty_source_guard = 2"
        )
        settings = load_settings(cfg)
        rel, _ = await one_cycle(settings)
        assert rel.created == 5 and rel.error is None

        # lab-a goes empty after answering 4 pairs: lab-a failed, lab-b did not.
        lab_a.sees()
        lab_b.sees("sw-a", "sw-b")
        rel, _ = await one_cycle(settings)
        assert (2, 1001) in sim.pairs(ASST)  # lab-b's new pair went in
        assert rel.error is not None and "source 'lab-a'" in rel.error
        assert "returned no pairs, but 4 last time" in rel.error
        assert rel.prune_blocked is not None and "'lab-a' failed" in rel.prune_blocked
        assert rel.deleted == 0 and len(sim.pairs(ASST)) == 6

        # lab-a shrinks from 4 to 1 (more than max_shrink, 50%): pruning waits, naming it.
        lab_a.sees("sw-a")
        rel, _ = await one_cycle(settings)
        assert rel.error is None
        assert rel.prune_blocked is not None
        assert rel.prune_blocked.startswith("source 'lab-a' shrank from 4 to 1 pairs")
        assert rel.deleted == 0

        # The operator accepts the new sizes (SIGHUP): lab-a's lost pairs are pruned.
        rel, _ = await one_cycle(settings, resync=True)
        assert rel.prune_blocked is None and rel.error is None
        assert sim.pairs(ASST) == {(1, 1007), (1, 1001), (2, 1001)}

        # One source empty from the start of its life is accepted once SIGHUP said so.
        lab_a.sees()
        rel, _ = await one_cycle(settings, resync=True)
        assert rel.error is None and rel.prune_blocked is None
        assert sim.pairs(ASST) == {(1, 1001), (2, 1001)}


async def test_every_source_failing_fails_the_relation(tmp_path: Path) -> None:
    a_table, lab_a = lldpd_source(tmp_path, "lab-a", "srv-07")
    b_table, lab_b = lldpd_source(tmp_path, "lab-b", "srv-01")
    for host in (lab_a, lab_b):
        host.sees("sw-a")
        host.fail()
    async with simulator() as (sim, url):
        settings = load_settings(write_cfg(tmp_path, url, [a_table, b_table], prune=PRUNE_NOW))
        rel, _ = await one_cycle(settings)
    assert rel.error is not None and rel.error.startswith("every source failed: lab-a: ")
    assert "lab-b: " in rel.error and rel.created == 0 and not sim.pairs(ASST)
    assert rel.prune_blocked == "the source failed this cycle"


async def test_plan_names_each_fact_s_source(tmp_path: Path) -> None:
    a_table, lab_a = lldpd_source(tmp_path, "lab-a", "srv-07")
    b_table, lab_b = lldpd_source(tmp_path, "lab-b", "srv-01")
    lab_a.sees("sw-d", "sw-x")
    lab_b.fail()
    async with replay_netbox("cables_dc1") as nb, simulator() as (_, url):
        sources = [netbox_source(nb.url), a_table, b_table]
        settings = load_settings(write_cfg(tmp_path, url, sources))
        async with engine_for(settings) as engine:
            plan = await engine.plan_relation(settings.relations[0])
    doc = plan_document(settings, [plan], {})
    entry = doc["relations"][0]
    assert [(s["name"], s["type"], s["desired"]) for s in entry["sources"]] == [
        ("netbox", "netbox", 7),
        ("lab-a", "command", 1),
        ("lab-b", "command", None),
    ]
    assert "exited with status 3" in entry["sources"][2]["error"]
    assert {(u["source_name"], u["key"]) for u in entry["unresolved"]} == {
        ("lab-a", "sw-x"),
        ("netbox", "srv-06"),
    }
    text = render_text(doc)
    assert "  ! source lab-b failed: " in text
    assert "  source lab-a (command): 1 desired, 1 unresolved, 0 bad records" in text
    assert f"? target key 'srv-06' not in the CMDB (netbox: {nb.url}/dcim/cables/7/)" in text
    assert "? source key 'sw-x' not in the CMDB (lab-a: command:" in text


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    """main() configures structlog onto this test's captured stdout; undo that after."""
    saved = structlog.get_config()
    fast = syncd_log._fast
    yield
    structlog.configure(**saved)
    syncd_log._fast = fast


BASE = """
[cmdb]
url = "http://127.0.0.1:9"
app_code = "syncd"
app_secret = "s3cret-app"

[ops]
enabled = false

[[relations]]
name = "dc"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "bk_switch_connect_host"
"""
FILE = '{ type = "file", path = "t.csv" }'


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        (
            f"source = {FILE}\nsources = [{FILE}]",
            "relations[0](dc): give either source = {...} or sources = [...], not both",
        ),
        ("", "relations[0](dc): no source: give source = {...} or sources = [...]"),
        ("sources = []", "relations[0](dc): sources = [] is empty: give at least one source"),
        (
            'sources = [{ type = "file", path = "a.csv", name = "lab" },'
            ' { type = "file", path = "b.csv", name = "lab" }]',
            "sources[0] and sources[1] are both named 'lab'",
        ),
        (
            f'sources = [{FILE}, {{ type = "file", path = "b.csv", name = "lab/b" }}]',
            "relations[0](dc).sources[1](lab/b).name: String should match pattern",
        ),
        (
            f'sources = [{FILE}, {{ type = "netbox", url = "ftp://x" }}]',
            "relations[0](dc).sources[1].netbox.url",
        ),
    ],
)
@pytest.mark.usefixtures("_restore_logging")
def test_config_errors_name_the_relation_and_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tables: str, message: str
) -> None:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(BASE + tables + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg)
    assert message in str(caught.value)
    with pytest.raises(SystemExit) as exited:
        main(["check-config", "--config", str(cfg)])
    assert exited.value.code == 78
    assert message in capsys.readouterr().err


@pytest.mark.usefixtures("_restore_logging")
def test_default_names_and_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "syncd.toml"
    tables = f'sources = [{FILE}, {{ type = "file", path = "b.csv", name = "lab" }}, {FILE}]'
    cfg.write_text(BASE + tables + "\n", encoding="utf-8")
    rel = load_settings(cfg).relations[0]
    assert [name for name, _ in rel.named_sources()] == ["file#0", "lab", "file#2"]
    assert [str(s.path) for s in rel.source_settings()] == [  # type: ignore[union-attr]
        str(tmp_path / "t.csv"),
        str(tmp_path / "b.csv"),
        str(tmp_path / "t.csv"),
    ]
    assert main(["check-config", "--config", str(cfg)]) == 0
    assert "config OK: 1 relation(s): dc" in capsys.readouterr().out


def test_pushes_reach_a_relation_through_any_of_its_sources(tmp_path: Path) -> None:
    cfg = tmp_path / "syncd.toml"
    watched = (
        '{ type = "command", name = "lab", argv = ["lldpcli", "-f", "json", "show", '
        '"neighbors"], format = "lldpd", watch = true }'
    )
    netbox = '{ type = "netbox", url = "https://netbox.example", token = "t" }'
    cfg.write_text(
        BASE.replace("enabled = false", "port = 0")
        + f"sources = [{FILE}, {netbox}, {watched}]\n"
        + '[hooks.netbox]\nsecret = "hook-secret"\n',
        encoding="utf-8",
    )
    asked: list[tuple[str, list[str]]] = []
    push = PushSources(load_settings(cfg), lambda why, rels: asked.append((why, list(rels))))
    assert push.webhook is not None and push.webhook.relations == ["dc"]
    assert [s.name for s in push.streams] == ["dc"]
    # Several sources: a pushed change cannot be applied on its own; a site change asks
    # for a full read of the relation right away (a cable change does once its apply says so).
    site = parse_event(b'{"event": "updated", "object_type": "dcim.site", "data": {"id": 1}}')
    assert push.webhook.on_event(site) == "full_read"
    push._debouncers[0].fire(2)
    assert asked == [
        ("netbox webhook: dcim.site updated", ["dc"]),
        ("dc: 2 change(s) from lldpcli", ["dc"]),
    ]

"""Fixture loading: the documented example as written, ranges, JSON, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cmdb_simulator import Fixture, FixtureError, Simulator

REPO = Path(__file__).resolve().parents[2]

EXAMPLE = """
apps:                       # credentials it accepts
  - {bk_app_code: syncd, bk_app_secret: change-me}
objects:                    # instances per object; hosts are keyed by bk_host_id
  bk_switch:
    - {bk_inst_id: 1, bk_inst_name: sw-core-01}
  host:
    - {bk_host_id: 101, bk_host_innerip: 10.0.0.1, bk_host_name: srv-01}
model_associations:
  - {bk_obj_asst_id: bk_switch_connect_host, bk_obj_id: bk_switch, bk_asst_id: connect,
     bk_asst_obj_id: host, mapping: "n:n"}
instance_associations:      # pairs that already exist
  - {bk_obj_asst_id: bk_switch_connect_host, bk_inst_id: 1, bk_asst_inst_id: 101}
"""


def test_issue_example_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "fixture.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    sim = Simulator(Fixture.load(path))
    assert sim.pairs("bk_switch_connect_host") == {(1, 101)}
    assert sim.store.table("host").rows()[0]["bk_host_innerip"] == "10.0.0.1"
    [row] = sim.associations("bk_switch_connect_host")
    assert row["id"] == 1 and row["bk_obj_id"] == "bk_switch" and row["bk_asst_obj_id"] == "host"


@pytest.mark.parametrize("name", ["config/simulator-fixture.yaml", "config/demo/fixture.yaml"])
def test_shipped_fixtures_load(name: str) -> None:
    sim = Simulator(Fixture.load(REPO / name))
    assert (1, 101) in sim.pairs("bk_switch_connect_host")


def test_demo_fixture_matches_the_demo_topology() -> None:
    fixture = Fixture.load(REPO / "config/demo/fixture.yaml")
    hosts = fixture.objects["host"]
    assert [h["bk_host_id"] for h in hosts] == list(range(101, 141))
    assert hosts[0] == {"bk_host_id": 101, "bk_host_innerip": "10.0.0.1", "bk_host_name": "srv-01"}
    assert [s["bk_inst_name"] for s in fixture.objects["bk_switch"]][:2] == [
        "sw-core-01",
        "sw-core-02",
    ]
    mappings = {m.bk_obj_asst_id: m.mapping for m in fixture.model_associations}
    assert mappings == {"bk_switch_connect_host": "n:n", "bk_switch_uplink_bk_switch": "1:n"}


def test_json_and_ranges(tmp_path: Path) -> None:
    doc = {
        "apps": [{"bk_app_code": "a", "bk_app_secret": "b"}],
        "objects": {"bk_switch": [{"bk_inst_id": 3, "bk_inst_name": "explicit"}]},
        "instance_ranges": {"bk_switch": [1, 5000], "host": [[100001, 100010], [200001, 200002]]},
    }
    path = tmp_path / "f.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    sim = Simulator(Fixture.load(path))
    switches = sim.store.table("bk_switch")
    assert switches.exists(1) and switches.exists(5000) and not switches.exists(5001)
    assert switches.rows()[2] == {
        "bk_inst_id": 3,
        "bk_inst_name": "explicit",
        "bk_obj_id": "bk_switch",
    }
    assert switches.rows()[0]["bk_inst_name"] == "bk_switch-1"
    hosts = sim.store.table("host")
    assert len(hosts) == 12
    assert hosts.rows()[0] == {
        "bk_host_id": 100001,
        "bk_host_innerip": "10.1.134.161",
        "bk_host_name": "host-100001",
        "bk_cloud_id": 0,
    }
    assert len({h["bk_host_innerip"] for h in hosts.rows()}) == 12


def test_add_instances_at_runtime() -> None:
    sim = Simulator(Fixture.from_dict({"apps": [{"bk_app_code": "a", "bk_app_secret": "b"}]}))
    sim.add_instances("host", [{"bk_host_id": 7, "bk_host_innerip": "10.9.9.9"}])
    assert sim.store.instance_exists("host", 7)
    with pytest.raises(FixtureError, match="bk_host_id"):
        sim.add_instances("host", [{"bk_inst_id": 8}])


BASE: dict[str, Any] = {
    "apps": [{"bk_app_code": "a", "bk_app_secret": "b"}],
    "objects": {
        "bk_switch": [{"bk_inst_id": 1}],
        "host": [{"bk_host_id": 101}, {"bk_host_id": 102}],
    },
    "model_associations": [
        {
            "bk_obj_asst_id": "bk_switch_connect_host",
            "bk_obj_id": "bk_switch",
            "bk_asst_id": "connect",
            "bk_asst_obj_id": "host",
            "mapping": "1:1",
        }
    ],
}


def pair(src: int, dst: int) -> dict[str, Any]:
    return {"bk_obj_asst_id": "bk_switch_connect_host", "bk_inst_id": src, "bk_asst_inst_id": dst}


BAD = [
    pytest.param({"apps": []}, "apps", "at least one", id="no-apps"),
    pytest.param(
        {"apps": [{"bk_app_code": "a"}]}, "apps[0].bk_app_secret", "required", id="no-secret"
    ),
    pytest.param(
        {"objects": {"host": [{"bk_inst_id": 1}]}},
        "objects.host[0].bk_host_id",
        "required",
        id="host-id",
    ),
    pytest.param(
        {"objects": {"bk_switch": [{"bk_inst_id": "1"}]}},
        "objects.bk_switch[0].bk_inst_id",
        "integer",
        id="str-id",
    ),
    pytest.param(
        {"objects": {"bk_switch": [{"bk_inst_id": 1}, {"bk_inst_id": 1}]}},
        "objects.bk_switch[1].bk_inst_id",
        "duplicate",
        id="dup-id",
    ),
    pytest.param(
        {"instance_ranges": {"host": [5, 1]}}, "instance_ranges.host", "greater", id="range-order"
    ),
    pytest.param(
        {"instance_ranges": {"host": [1]}},
        "instance_ranges.host",
        "[first_id, last_id]",
        id="range-shape",
    ),
    pytest.param({"modle_associations": []}, "modle_associations", "unknown key", id="typo"),
    pytest.param(
        {"model_associations": [{**BASE["model_associations"][0], "mapping": "m:n"}]},
        "model_associations[0].mapping",
        "one of",
        id="mapping",
    ),
    pytest.param(
        {"model_associations": [{**BASE["model_associations"][0], "bk_asst_obj_id": "router"}]},
        "model_associations[0].bk_obj_asst_id",
        "end with",
        id="asst-id-convention",
    ),
    pytest.param(
        {"instance_associations": [{**pair(1, 101), "bk_obj_asst_id": "x"}]},
        "instance_associations[0].bk_obj_asst_id",
        "not in model_associations",
        id="unknown-model",
    ),
    pytest.param(
        {"instance_associations": [pair(2, 101)]},
        "instance_associations[0]",
        "instance 2",
        id="no-source",
    ),
    pytest.param(
        {"instance_associations": [pair(1, 999)]},
        "instance_associations[0]",
        "instance 999",
        id="no-target",
    ),
    pytest.param(
        {"instance_associations": [pair(1, 101), pair(1, 101)]},
        "instance_associations[1]",
        "twice",
        id="dup-pair",
    ),
    pytest.param(
        {"instance_associations": [pair(1, 101), pair(1, 102)]},
        "instance_associations[1]",
        "1:1",
        id="mapping-broken",
    ),
]


@pytest.mark.parametrize(("override", "key", "why"), BAD)
def test_bad_fixtures_say_file_key_and_why(
    tmp_path: Path, override: dict[str, Any], key: str, why: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({**BASE, **override}), encoding="utf-8")
    with pytest.raises(FixtureError) as err:
        Simulator(Fixture.load(path))
    message = str(err.value)
    assert message.startswith(f"fixture {path}: {key}")
    assert why in message


def test_unreadable_and_unparsable(tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match="cannot read"):
        Fixture.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("apps: [unclosed", encoding="utf-8")
    with pytest.raises(FixtureError, match=r"broken\.yaml: <file>: not valid YAML"):
        Fixture.load(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(FixtureError, match="<top>: must be a mapping"):
        Fixture.load(listed)

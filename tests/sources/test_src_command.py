"""CommandSource with real child processes, and the lldpd parser on captured output.

The lldpd samples in fixtures/lldpd/ were captured from lldpd 1.0.16 (Debian 12) running
in three network namespaces joined by veth pairs: ``srv-01_two_switches.json`` is the
host's view of two switches, ``leaf-s1_one_neighbor.json`` a switch's view of one host.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from src_helpers import HERE, read_all

from syncd.sources.base import SourceError
from syncd.sources.command import CommandSource
from syncd.sources.lldpd import LldpdFormatError, parse_neighbors, pick_ip
from syncd.sources.settings import CommandSourceSettings

LLDPD = HERE / "fixtures" / "lldpd"


def py(code: str, **kw: Any) -> CommandSource:
    settings = CommandSourceSettings.model_validate(
        {"type": "command", "argv": [sys.executable, "-c", code], **kw}
    )
    return CommandSource(settings, name="rel")


def printing(text: str, **kw: Any) -> CommandSource:
    return py(f"import sys; sys.stdout.write({text!r})", **kw)


async def test_json_list_with_paths() -> None:
    doc = [{"sw": {"name": "sw-a"}, "hosts": ["10.0.0.1"]}, {"sw": {"name": "sw-b"}}]
    src = printing(json.dumps(doc), source_field="sw.name", target_field="hosts[0]")
    assert await read_all(src) == [("sw-a", "10.0.0.1", 0)]
    assert src.stats.records == 2 and src.stats.bad == 1
    assert src.origin(1) == "command:" + os.path.basename(sys.executable) + " stdout record 1"


async def test_json_records_path() -> None:
    src = printing(
        '{"data": {"rows": [{"a": 1, "b": 2}]}}',
        records="data.rows",
        source_field="a",
        target_field="b",
    )
    assert await read_all(src) == [(1, 2, 0)]


async def test_jsonl_bad_line_skipped() -> None:
    text = (
        '{"bk_inst_id": 1, "bk_asst_inst_id": 2}\n\n{broken\n'
        '{"bk_inst_id": 3, "bk_asst_inst_id": 4}\n'
    )
    src = printing(text, format="jsonl")
    assert await read_all(src) == [(1, 2, 1), (3, 4, 4)]
    assert src.stats.bad == 1 and src.stats.blank == 1


async def test_csv() -> None:
    text = "switch,host\r\nsw-a,10.0.0.1\r\nsw-b,10.0.0.2,extra\r\nsw-c,10.0.0.3\r\n"
    src = printing(text, format="csv", source_field="switch", target_field="host")
    assert await read_all(src) == [("sw-a", "10.0.0.1", 2), ("sw-c", "10.0.0.3", 4)]
    assert src.stats.bad == 1
    with pytest.raises(SourceError, match="without the column"):
        await read_all(printing("a,b\n1,2\n", format="csv"))


async def test_env_is_passed_and_never_shown() -> None:
    code = "import os, sys; sys.stderr.write('token=' + os.environ['API_TOKEN']); sys.exit(3)"
    src = py(code, env={"API_TOKEN": "s3cr3t-value"})
    with pytest.raises(SourceError) as err:
        await read_all(src)
    text = str(err.value)
    assert "exited with status 3" in text and "token=***" in text
    assert "s3cr3t-value" not in text and "rel" in text
    assert os.path.basename(sys.executable) in text and "-c" not in text  # argv[0] only


async def test_stderr_tail_is_kept() -> None:
    code = "import sys; sys.stderr.write('x' * 100000 + 'THE END'); sys.exit(1)"
    with pytest.raises(SourceError, match="THE END") as err:
        await read_all(py(code))
    assert len(str(err.value)) < 2500


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The child starts a grandchild that would outlive a plain kill of the child.
    code = (
        "import subprocess, sys, time;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid));"
        "sys.stderr.write('started'); sys.stderr.flush(); time.sleep(60)"
    )
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"timed out after 0\.5s and was killed"):
        await asyncio.wait_for(read_all(py(code, timeout=0.5)), 10)
    assert time.monotonic() - started < 5
    grandchild = int(pidfile.read_text())
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the grandchild survived the timeout")


@pytest.mark.parametrize(
    ("fmt", "out", "match"),
    [
        ("json", "this is not json", "no valid JSON"),
        ("json", '{"a": 1}', "not a list"),
        ("jsonl", "garbage\nmore garbage\n", "no valid JSON line"),
        ("lldpd", "<xml/>", "no valid JSON"),
        ("lldpd", '{"lldp": [{"interface": []}]}', "json0"),
    ],
)
async def test_garbage_stdout(fmt: str, out: str, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        await read_all(printing(out, format=fmt))


async def test_missing_program_and_huge_output() -> None:
    missing = CommandSource(
        CommandSourceSettings(type="command", argv=["/nonexistent/lldpcli"]), name="rel"
    )
    with pytest.raises(SourceError, match="could not start"):
        await read_all(missing)
    with pytest.raises(SourceError, match="max_output"):
        await read_all(py("print('x' * 10000)", max_output=1000))


async def test_lldpd_format_from_a_child() -> None:
    capture = (LLDPD / "srv-01_two_switches.json").read_text()
    src = printing(capture, format="lldpd", local_name="srv-01")
    # The switch is the relation's source: neighbour first, this host second.
    assert [f[:2] for f in await read_all(src)] == [
        ("leaf-s1.example.net", "srv-01"),
        ("leaf-s2.example.net", "srv-01"),
    ]
    src = printing(capture, format="lldpd", local_name="10.0.0.5", neighbor_key="mgmt_ip")
    assert [f[:2] for f in await read_all(src)] == [
        ("192.0.2.11", "10.0.0.5"),
        ("192.0.2.12", "10.0.0.5"),
    ]


def test_lldpd_one_neighbor_is_a_dict() -> None:
    doc = json.loads((LLDPD / "leaf-s1_one_neighbor.json").read_text())
    assert isinstance(doc["lldp"]["interface"], dict)
    (n,) = parse_neighbors(doc)
    assert (n.local_port, n.name, n.port_descr) == ("swp7", "srv-01.example.net", "eth0")
    assert n.chassis_id is not None and n.mgmt_ips == ("198.51.100.11",)


def test_lldpd_many_neighbors_is_a_list() -> None:
    doc = json.loads((LLDPD / "srv-01_two_switches.json").read_text())
    assert isinstance(doc["lldp"]["interface"], list)
    ns = list(parse_neighbors(doc))
    assert [(n.local_port, n.name) for n in ns] == [
        ("eth0", "leaf-s1.example.net"),
        ("eth1", "leaf-s2.example.net"),
    ]
    assert ns[1].mgmt_ips == ("192.0.2.12", "2001:db8::12")


def test_lldpd_unnamed_chassis_and_no_neighbors() -> None:
    # Derived from the capture: a neighbour that sent no system name keeps its fields unkeyed.
    doc = {
        "lldp": {
            "interface": {
                "eth2": {
                    "via": "LLDP",
                    "chassis": {"id": {"type": "mac", "value": "00:11:22:33:44:55"}},
                    "port": {"id": {"type": "ifname", "value": "Ethernet9"}},
                }
            }
        }
    }
    (n,) = parse_neighbors(doc)
    assert n.name is None and n.chassis_id == "00:11:22:33:44:55" and n.port_id == "Ethernet9"
    assert list(parse_neighbors({"lldp": {}})) == []
    with pytest.raises(LldpdFormatError):
        list(parse_neighbors({"other": 1}))


def test_pick_ip_prefers_ipv4_then_global_v6() -> None:
    assert pick_ip(("fe80::1", "2001:db8::1", "192.0.2.1")) == "192.0.2.1"
    assert pick_ip(("fe80::1", "2001:db8::1")) == "2001:db8::1"
    assert pick_ip(("fe80::1",)) is None


def test_settings() -> None:
    with pytest.raises(ValidationError):
        CommandSourceSettings.model_validate({"type": "command", "argv": []})
    s = CommandSourceSettings.model_validate(
        {"type": "command", "argv": ["x"], "env": {"T": "secret-env"}}
    )
    assert "secret-env" not in repr(s)

"""``syncd plan``: pinned output for a mixed scenario, both formats, exit statuses (issue 8).

The plain plan runs as a real process (its stdout and exit status 2); the other commands
run through ``syncd.cli.main`` in this process (tests/helpers.py ``run_syncd``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, Proc, fixture_dict, run_syncd, start_simulator, write_config

GOLDEN = Path(__file__).parent / "golden"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def names(rows: list[tuple[str, str]]) -> str:
    return "switch,host\n" + "".join(f"{s},{h}\n" for s, h in rows)


def normalise(text: str, tmp_path: Path) -> str:
    return text.replace(str(tmp_path), "<tmp>")


def test_plan_mixed_scenario(tmp_path: Path, procs: list[Proc]) -> None:
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(fixture_dict(switches=3, hosts=5, mapping="1:n")))
    url = start_simulator(procs, fixture)
    topo = tmp_path / "topology.csv"
    cfg = write_config(
        tmp_path,
        url,
        topo,
        extra=(
            'source_key = "bk_inst_name"\ntarget_key = "bk_host_name"\n'
            "\n[relations.prune]\nenabled = true\ngrace_seconds = 0\ngrace_cycles = 1\n"
            "max_fraction = 1.0\n"
        ),
        concurrency=1,
    )
    text = cfg.read_text().replace(
        f'path = "{topo}" }}',
        f'path = "{topo}", source_field = "switch", target_field = "host" }}',
    )
    cfg.write_text(text)
    v1 = [
        ("bk_switch-1", "host-1001"),
        ("bk_switch-1", "host-1002"),
        ("bk_switch-2", "host-1003"),
        ("bk_switch-3", "host-1003"),  # 1:n: host-1003 already has a source -> conflict, held
        ("bk_switch-3", "ghost"),  # no such host -> unresolved (keeps bk_switch-3's pairs)
    ]
    topo.write_text(names(v1))
    first = run_syncd("once", "--config", str(cfg))
    assert first.code == 1, first.stderr  # a conflict and an unresolved key remain
    # The source changes: one pair leaves (pruned), one arrives (created).
    v2 = [row for row in v1 if row != ("bk_switch-1", "host-1002")] + [("bk_switch-2", "host-1004")]
    topo.write_text(names(v2))

    plain = run("plan", "--config", str(cfg))
    as_json = run_syncd("plan", "--config", str(cfg), "--json")
    assert plain.returncode == 2, plain.stderr
    assert as_json.code == 2, as_json.stderr
    got_text = normalise(plain.stdout, tmp_path)
    got_json = normalise(as_json.stdout, tmp_path)
    if os.environ.get("SYNCD_UPDATE_GOLDEN"):
        (GOLDEN / "plan.txt").write_text(got_text)
        (GOLDEN / "plan.json").write_text(got_json)
    assert got_text == (GOLDEN / "plan.txt").read_text()
    assert got_json == (GOLDEN / "plan.json").read_text()
    doc = json.loads(as_json.stdout)
    rel = doc["relations"][0]
    assert doc["changes"] is True and doc["version"] == 1
    assert rel["create"] == [{"bk_inst_id": 2, "bk_asst_inst_id": 1004}]
    assert [(d["bk_inst_id"], d["bk_asst_inst_id"]) for d in rel["delete"]] == [(1, 1002)]
    assert rel["delete"][0]["association_id"] is not None
    assert [h["reason"] for h in rel["held"]] == ["conflict_1_n"]
    assert [(u["side"], u["key"]) for u in rel["unresolved"]] == [("target", "ghost")]

    # The plan changed nothing: the next real cycle does exactly what it said.
    applied = run_syncd("once", "--config", str(cfg))
    outcomes = sorted(
        (p["outcome"], p.get("bk_inst_id"), p.get("bk_asst_inst_id"))
        for p in applied.lines
        if p.get("event") == "pair" and p["outcome"] not in ("unresolved", "held")
    )
    assert outcomes == [("created", 2, 1004), ("deleted", 1, 1002)]
    held = [p for p in applied.lines if p.get("event") == "pair" and p["outcome"] == "held"]
    assert [(h["bk_inst_id"], h["bk_asst_inst_id"], h["reason"]) for h in held] == [
        (3, 1003, "conflict_1_n")
    ]
    assert held[0]["blocked_by"][0]["bk_inst_id"] == 2
    after = run_syncd("plan", "--config", str(cfg))
    assert after.code == 0, after.stdout  # held and unresolved remain, but no changes
    assert after.stdout.strip().endswith("no changes")

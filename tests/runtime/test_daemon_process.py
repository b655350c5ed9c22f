"""The daemon as a real process: signals, shutdown, config errors (issue 3)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from syncd.cmdb.client import CmdbClient
from tests.helpers import (
    ASST,
    REPO,
    Proc,
    fixture_dict,
    load,
    run_syncd,
    start_simulator,
    write_config,
    write_csv,
)


def pairs(switches: int, hosts: int) -> list[tuple[int, int]]:
    return [(s, 1000 + h) for s in range(1, switches + 1) for h in range(1, hosts + 1)]


def write_fixture(tmp_path: Path, **kw: object) -> Path:
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(fixture_dict(**kw)))  # type: ignore[arg-type]
    return path


def cmdb_pairs(cfg: Path) -> set[tuple[int, int]]:
    async def read() -> set[tuple[int, int]]:
        async with CmdbClient(load(cfg).cmdb) as client:
            out: set[tuple[int, int]] = set()
            async for page in client.iter_associations("bk_switch", ASST):
                for s, d, _ in page:
                    assert (s, d) not in out, "a pair is doubled in the CMDB"
                    out.add((s, d))
            return out

    return asyncio.run(read())


def state_pairs(cfg: Path) -> set[tuple[int, int]]:
    db = sqlite3.connect(load(cfg).state.path)
    try:
        return {(s, d) for s, d in db.execute("SELECT src, dst FROM pairs")}
    finally:
        db.close()


def test_sighup_resyncs_and_sigterm_exits_clean(tmp_path: Path, procs: list[Proc]) -> None:
    desired = pairs(3, 40)
    url = start_simulator(procs, write_fixture(tmp_path, switches=3, hosts=40))
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired), interval=3600)
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    daemon.wait_for(lambda l: l.get("event") == "cycle")
    assert cmdb_pairs(cfg) == set(desired)

    async def delete_some() -> None:
        async with CmdbClient(load(cfg).cmdb) as client:
            ids = []
            async for page in client.iter_associations("bk_switch", ASST):
                ids.extend(i for s, d, i in page if s == 2)
            answer = await client.delete_associations("bk_switch", ids)
            assert answer.data == 40

    asyncio.run(delete_some())
    mark = len(daemon.lines)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda l: l.get("event") == "resync", start=mark)
    cycle = daemon.wait_for(lambda l: l.get("event") == "cycle", start=mark)
    assert cycle["created"] == 40
    assert cmdb_pairs(cfg) == set(desired)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert daemon.count(lambda l: l.get("event") == "stopped") == 1


def test_sigterm_mid_cycle_keeps_state_consistent(tmp_path: Path, procs: list[Proc]) -> None:
    desired = pairs(20, 100)  # 2000 pairs in 100 requests of 20, slow server
    url = start_simulator(
        procs, write_fixture(tmp_path, switches=20, hosts=100), "--latency-ms", "150"
    )
    cfg = write_config(
        tmp_path,
        url,
        write_csv(tmp_path / "t.csv", desired),
        cmdb_extra="batch_size = 20",
        concurrency=2,
    )
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    daemon.wait_for(lambda l: l.get("event") == "pair")
    daemon.signal(signal.SIGTERM)
    started = time.monotonic()
    assert daemon.wait() == 0
    assert time.monotonic() - started < 5
    sent = {
        (l["bk_inst_id"], l["bk_asst_inst_id"]) for l in daemon.lines if l.get("event") == "pair"
    }
    in_cmdb = cmdb_pairs(cfg)
    known = state_pairs(cfg)
    assert 0 < len(known) < len(desired)
    assert known == in_cmdb  # every answer that arrived was recorded; nothing else
    assert sent == in_cmdb
    # A restart finishes the job without doubling anything.
    again = Proc(["-m", "syncd", "once", "--config", str(cfg)])
    procs.append(again)
    assert again.wait(60) == 0
    assert cmdb_pairs(cfg) == set(desired) == state_pairs(cfg)
    resent = {
        (l["bk_inst_id"], l["bk_asst_inst_id"]) for l in again.lines if l.get("event") == "pair"
    }
    assert not resent & known


def wait_until_in_flight(url: str, timeout: float = 10.0) -> None:
    """Until the simulator has a request open (not assumed after a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/_sim/stats", timeout=5) as resp:
            if json.loads(resp.read())["in_flight"] > 0:
                return
        time.sleep(0.02)
    raise AssertionError("no request reached the simulator")


def test_second_sigterm_exits_at_once(tmp_path: Path, procs: list[Proc]) -> None:
    url = start_simulator(
        procs, write_fixture(tmp_path, switches=20, hosts=100), "--per-detail-ms", "100"
    )
    topology = write_csv(tmp_path / "t.csv", pairs(20, 100))
    cfg = write_config(tmp_path, url, topology, shutdown_deadline=30)
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    daemon.wait_for(lambda l: l.get("event") == "resync")
    wait_until_in_flight(url)  # a 100-pair batch takes 10 s: the stop waits for it
    daemon.signal(signal.SIGTERM)
    daemon.wait_for(lambda l: l.get("event") == "stopping")
    daemon.signal(signal.SIGTERM)
    started = time.monotonic()
    assert daemon.wait() == 128 + signal.SIGTERM
    assert time.monotonic() - started < 1.5


def test_config_error_exits_78_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[cmdb]\nurl = "ftp://x"\napp_code = "a"\napp_secret = "topsecret"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", "check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert proc.returncode == 78
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cmdb.url" in lines[0] and "http" in lines[0]
    assert "topsecret" not in proc.stderr + proc.stdout


def test_corrupt_state_is_rebuilt_from_the_cmdb(tmp_path: Path, procs: list[Proc]) -> None:
    """The state, not the process, is in question: ``once`` through ``syncd.cli.main``."""
    desired = pairs(2, 30)
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=30))
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired))
    assert run_syncd("once", "--config", str(cfg)).code == 0
    (tmp_path / "state.db").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
    again = run_syncd("once", "--config", str(cfg))
    assert again.code == 0, again.stderr
    warning = [l for l in again.lines if l.get("event") == "state_rebuilt"]
    assert len(warning) == 1 and "corrupt" in json.dumps(warning[0])
    assert [l for l in again.lines if l.get("event") == "pair"] == []  # rebuilt, nothing resent
    assert cmdb_pairs(cfg) == set(desired) == state_pairs(cfg)
    assert list(tmp_path.glob("state.db.corrupt-*"))


def test_secrets_never_reach_the_output(tmp_path: Path, procs: list[Proc]) -> None:
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=5))
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", [(1, 1001), (9, 1001)]))
    # A wrong secret too: the refusal must be reported without echoing it.
    for secret in ("s3cret-app", "wr0ng-s3cret"):
        cfg.write_text(
            cfg.read_text().replace('app_secret = "s3cret-app"', f'app_secret = "{secret}"')
        )
        run = run_syncd("once", "--config", str(cfg))  # all syncd writes: sys.stdout/stderr
        assert secret not in run.stdout + run.stderr
        assert run.lines, "the run logged nothing"
        cfg.write_text(
            cfg.read_text().replace(f'app_secret = "{secret}"', 'app_secret = "s3cret-app"')
        )


def test_second_daemon_on_the_same_state_exits_75(tmp_path: Path, procs: list[Proc]) -> None:
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=5))
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", [(1, 1001)]), interval=30)
    first = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(first)
    first.wait_for(lambda l: l.get("event") == "cycle")
    second = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(second)
    assert second.wait(30) == 75
    locked = [l for l in second.lines if l.get("event") == "state_locked"]
    assert len(locked) == 1 and f"pid {first.proc.pid}" in locked[0]["error"]
    assert not [l for l in second.lines if l.get("event") == "cycle"]
    first.signal(signal.SIGTERM)
    assert first.wait() == 0

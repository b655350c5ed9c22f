"""`syncd run` on a bad day for its state store (issue 13): a full disk, a read-only state
directory, a schema it does not know. The daemon never dies: each cycle fails with one
line, /healthz and /metrics keep answering (not ready), the next cycle tries again.

The daemon and the one-shot ``once`` and ``plan`` run in this process (tests/indaemon.py,
tests/helpers.py ``run_syncd``): the state store's bad day is in question, not the process
(the daemon "never dies": its ``run`` has not returned)."""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from syncd.state import SCHEMA_VERSION
from tests.helpers import Proc, Ran, run_syncd, start_simulator, write_config, write_csv
from tests.indaemon import InProcessDaemon, run_daemon
from tests.mounts import fill, read_only, small_fs
from tests.runtime.test_daemon_process import cmdb_pairs, pairs, write_fixture


def get(base: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def daemon_config(tmp_path: Path, url: str, desired: list[tuple[int, int]], state: Path) -> Path:
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired), interval=0.3)
    text = cfg.read_text()
    text = text.replace(f'path = "{tmp_path / "state.db"}"', f'path = "{state}"')
    text = text.replace("[ops]\nenabled = false", "[ops]\nenabled = true\nport = 0")
    cfg.write_text(text)
    return cfg


def failed_lines(daemon: InProcessDaemon, start: int = 0) -> list[dict[str, Any]]:
    return [l for l in daemon.lines[start:] if l.get("event") == "relation_failed"]


def assert_serving_not_ready(ops: str) -> None:
    assert get(ops, "/healthz")[0] == 200
    assert get(ops, "/readyz")[0] == 503
    status, metrics = get(ops, "/metrics")
    assert status == 200 and 'syncd_cycles_total{result="failed"}' in metrics


def test_disk_full_fails_cycles_until_there_is_room(tmp_path: Path, procs: list[Proc]) -> None:
    desired = pairs(10, 60)
    url = start_simulator(procs, write_fixture(tmp_path, switches=10, hosts=60))
    with small_fs(tmp_path / "fs", 1024) as fs:
        pad = fill(fs, 96)  # a fresh store fits; 600 answered pairs do not
        cfg = daemon_config(tmp_path, url, desired, fs / "state.db")

        def drive(daemon: InProcessDaemon) -> None:
            ops = daemon.wait_for(lambda l: l.get("event") == "started")["ops"]
            first = daemon.wait_for(lambda l: l.get("event") == "relation_failed")
            assert "state write failed" in first["error"] and "full" in first["error"], first
            assert "traceback" not in first
            mark = len(daemon.lines)
            daemon.wait_for(lambda l: l.get("event") == "cycle", start=mark)
            daemon.wait_for(lambda l: l.get("event") == "relation_failed", start=mark)  # again
            assert_serving_not_ready(ops)
            assert not daemon.exited.is_set()
            pad.unlink()  # room again: the next cycle converges
            done = daemon.wait_for(
                lambda l: (
                    l.get("event") == "relation"
                    and l.get("error") is None
                    and l.get("pending") == 0
                    and l.get("desired") == len(desired)
                ),
                timeout=60,
            )
            assert done["known"] == len(desired)
            assert cmdb_pairs(cfg) == set(desired)
            assert daemon.stop() == 0

        run_daemon(cfg, drive)
        # Every pair the CMDB holds was created by syncd: all owned, despite the lost writes.
        db = sqlite3.connect(fs / "state.db")
        assert db.execute("SELECT count(*) FROM pairs WHERE owned = 1").fetchone()[0] == 600
        db.close()


def test_read_only_state_directory_keeps_the_file(tmp_path: Path, procs: list[Proc]) -> None:
    desired = pairs(2, 20)
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=20))
    folder = tmp_path / "state"
    cfg = daemon_config(tmp_path, url, desired[:20], folder / "state.db")
    assert run_syncd("once", "--config", str(cfg)).code == 0
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "t.csv"), str(tmp_path / "t2.csv")))
    write_csv(tmp_path / "t2.csv", desired)
    before = sorted(p.name for p in folder.iterdir())

    writable_again = contextlib.ExitStack()
    writable_again.enter_context(read_only(folder))  # before the daemon starts

    def drive(daemon: InProcessDaemon) -> None:
        ops = daemon.wait_for(lambda l: l.get("event") == "started")["ops"]
        unavailable = daemon.wait_for(lambda l: l.get("event") == "relation_failed")
        assert str(folder / "state.db") in unavailable["error"]
        mark = len(daemon.lines)
        daemon.wait_for(lambda l: l.get("event") == "relation_failed", start=mark)
        assert_serving_not_ready(ops)
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing moved aside
        mark = len(daemon.lines)
        writable_again.close()
        daemon.wait_for(lambda l: l.get("event") == "state_available", start=mark)
        daemon.wait_for(
            lambda l: l.get("event") == "relation" and l.get("error") is None, start=mark
        )
        assert not [l for l in daemon.lines if l.get("event") == "state_rebuilt"]
        assert cmdb_pairs(cfg) == set(desired)
        assert daemon.stop() == 0

    with writable_again:
        run_daemon(cfg, drive)
    db = sqlite3.connect(folder / "state.db")
    assert db.execute("SELECT count(*) FROM pairs WHERE owned = 1").fetchone()[0] == 40
    db.close()


def test_a_newer_schema_fails_cycles_and_is_kept(tmp_path: Path, procs: list[Proc]) -> None:
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=20))
    state = tmp_path / "state.db"
    cfg = daemon_config(tmp_path, url, pairs(1, 5), state)
    assert run_syncd("once", "--config", str(cfg)).code == 0
    db = sqlite3.connect(state)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    kept = state.read_bytes()

    def drive(daemon: InProcessDaemon) -> None:
        ops = daemon.wait_for(lambda l: l.get("event") == "started")["ops"]
        line = daemon.wait_for(lambda l: l.get("event") == "relation_failed")
        assert "newer than this syncd" in line["error"] and line["relation"] == "switch-host"
        mark = len(daemon.lines)
        daemon.wait_for(lambda l: l.get("event") == "relation_failed", start=mark)
        assert_serving_not_ready(ops)
        assert daemon.stop() == 0

    run_daemon(cfg, drive)
    assert state.read_bytes() == kept and not list(tmp_path.glob("state.db.corrupt-*"))
    # `syncd plan` reports it and plans against an empty state, touching nothing.
    plan = run_syncd("plan", "--config", str(cfg))
    assert plan.code in (0, 2), plan.stderr
    assert "newer than this syncd" in plan.stderr and "empty state" in plan.stderr
    assert state.read_bytes() == kept and not list(tmp_path.glob("state.db.corrupt-*"))


def _plan(cfg: Path) -> Ran:
    return run_syncd("plan", "--config", str(cfg))


def test_plan_never_creates_moves_or_repairs_the_state(tmp_path: Path, procs: list[Proc]) -> None:
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=20))
    folder = tmp_path / "state"
    folder.mkdir()
    state = folder / "state.db"
    cfg = daemon_config(tmp_path, url, pairs(1, 5), state)
    missing = _plan(cfg)  # no state yet: planned against an empty one, nothing created
    assert missing.code == 2, missing.stderr
    assert list(folder.iterdir()) == []
    state.write_bytes(b"not a database" * 100)  # unusable: reported, kept as it is
    garbage = _plan(cfg)
    assert garbage.code == 2 and "unusable" in garbage.stderr
    assert "empty state" in garbage.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["state.db"]
    assert state.read_bytes() == b"not a database" * 100
    state.unlink()
    assert run_syncd("once", "--config", str(cfg)).code == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with read_only(folder):  # a valid file in a read-only directory: read as it is
        valid = _plan(cfg)
    assert valid.code == 0, valid.stderr
    assert valid.stderr == "" or "empty state" not in valid.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

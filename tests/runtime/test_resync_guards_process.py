"""The issue's case against a real daemon: after a prune_blocked (the source shrank 10 ->
3), a bare POST /resync from any local user deletes nothing; the operator's token does.

The daemon runs in this process (tests/indaemon.py): what is tested is its ops endpoint
over real HTTP and what the cycles do, not signals or the process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import Proc, fixture_dict, start_simulator, write_config, write_csv
from tests.indaemon import InProcessDaemon, run_daemon
from tests.runtime.test_daemon_process import cmdb_pairs

TOKEN = "a-long-operator-token-0123456789"


def post(url: str, auth: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": auth} if auth else {}
    req = urllib.request.Request(url + "/resync", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def started(daemon: InProcessDaemon) -> str:
    ops = str(daemon.wait_for(lambda l: l.get("event") == "started")["ops"])
    daemon.wait_for(lambda l: l.get("event") == "cycle")
    return ops


@pytest.mark.slow
def test_only_the_token_lifts_the_shrink_guard(tmp_path: Path, procs: list[Proc]) -> None:
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(fixture_dict(switches=2, hosts=10)))
    url = start_simulator(procs, fixture)
    full = [(1, 1000 + h) for h in range(1, 11)]
    topology = write_csv(tmp_path / "t.csv", full)
    cfg = write_config(
        tmp_path,
        url,
        topology,
        interval=3600,
        extra="prune = { enabled = true, grace_seconds = 0, grace_cycles = 1, "
        "max_fraction = 1, max_shrink = 0.5 }",
    )
    plain_cfg = cfg.read_text().replace("[ops]\nenabled = false", "[ops]\nenabled = true\nport = 0")
    cfg.write_text(plain_cfg)

    def no_token(daemon: InProcessDaemon) -> None:
        ops = started(daemon)
        write_csv(topology, full[:3])  # the source shrank 10 -> 3
        for _ in range(2):  # any local user, no token configured: resyncs, lifts nothing
            mark = len(daemon.lines)
            status, body = post(ops)
            assert status == 202 and body["lifts_guards"] is False
            daemon.wait_for(lambda l: l.get("event") == "prune_blocked", start=mark, timeout=30)
            daemon.wait_for(lambda l: l.get("event") == "cycle", start=mark, timeout=30)
        status, body = post(ops, f"Bearer {TOKEN}")  # nothing to check it against
        assert status == 403 and "no resync token is configured" in str(body["reason"])
        assert not [l for l in daemon.lines if l.get("outcome") == "deleted"]
        assert cmdb_pairs(cfg) == set(full)
        assert daemon.stop() == 0

    run_daemon(cfg, no_token)
    # The operator configures a token: only a request carrying it lifts the guard.
    (tmp_path / "token").write_text(TOKEN + "\n")
    cfg.write_text(
        plain_cfg.replace("port = 0", f'port = 0\nresync_token_file = "{tmp_path / "token"}"')
    )

    def token(daemon: InProcessDaemon) -> None:
        ops = started(daemon)
        for auth in (None, "Bearer wrong", f"Basic {TOKEN}"):
            assert post(ops, auth)[0] == 403
        assert cmdb_pairs(cfg) == set(full)
        mark = len(daemon.lines)
        status, body = post(ops, f"Bearer {TOKEN}")
        assert status == 202 and body["lifts_guards"] is True
        cycle = daemon.wait_for(lambda l: l.get("event") == "cycle", start=mark, timeout=30)
        assert cycle["deleted"] == 7 and cmdb_pairs(cfg) == set(full[:3])
        assert TOKEN not in "\n".join(daemon.raw)
        assert TOKEN not in daemon.stderr()

    run_daemon(cfg, token)

"""``python -m cmdb_simulator`` as a real process: the listening line, serving, clean exit."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from cmdb_simulator import cli as sim_cli

REPO = Path(__file__).resolve().parents[2]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cmdb_simulator", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_and_exits_zero_on_signal(sig: signal.Signals) -> None:
    proc = start(
        "--listen", "127.0.0.1:0", "--fixture", "config/demo/fixture.yaml",
        "--rate-limit", "50", "--max-in-flight", "4", "--fault-kinds", "502,drop", "--seed", "3",
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert line["event"] == "simulator_listening"
        url = line["url"]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        with urllib.request.urlopen(f"{url}/_sim/options", timeout=5) as resp:
            options = json.loads(resp.read())
        assert options["rate_limit"] == 50 and options["max_in_flight"] == 4
        assert options["fault_kinds"] == ["502", "drop"] and options["seed"] == 3
        body = json.dumps(
            {"bk_app_code": "syncd", "bk_app_secret": "change-me", "bk_username": "admin",
             "bk_obj_id": "bk_switch", "conditions": None}
        ).encode()  # fmt: skip
        req = urllib.request.Request(
            f"{url}/api/c/compapi/v2/cc/count_instance_associations/", data=body, method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["data"] == {"count": 5}
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert proc.stdout.read() == ""  # exactly one stdout line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_bad_fixture_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apps: []\n", encoding="utf-8")
    proc = start("--fixture", str(bad))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 78
    assert f"fixture {bad}: apps: at least one" in err


def test_bad_option_is_a_config_error() -> None:
    # docs/simulator.md: a bad fixture or option exits with 78 (EX_CONFIG), not argparse's 2.
    proc = start("--fixture", "config/demo/fixture.yaml", "--fault-kinds", "503")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 78
    assert "unknown fault kind '503'" in err


def test_defaults_follow_a_stock_cmdb() -> None:
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    args = parser.parse_args(["--fixture", "f"])
    # 100/s per app and resource (bk_apigw_resources_bk-cmdb.yaml:3206-3212), newest 3.14.
    assert (args.rate_limit, args.cmdb_version, args.auth) == (100.0, "3.14", None)
    picked = parser.parse_args(
        ["--fixture", "f", "--rate-limit", "off", "--cmdb-version", "3.10.16", "--auth", "on"]
    )
    assert (picked.rate_limit, picked.cmdb_version, picked.auth) == (None, "3.10.16", True)


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [("--cmdb-version", "3.11", "unknown cmdb version"), ("--auth", "yes", "expected on or off"),
     ("--rate-limit", "-3", "must be positive")],
)  # fmt: skip
def test_bad_new_options_are_config_errors(
    option: str,
    value: str,
    why: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command line's main in this process (the exit status of a real process for a bad
    option: test_bad_option_is_a_config_error); it must never get as far as serving."""

    def serve(*_: object) -> int:
        raise AssertionError(f"{option} {value} was accepted")

    monkeypatch.setattr(sim_cli, "_serve", serve)
    with pytest.raises(SystemExit) as exited:
        sim_cli.main(["--fixture", str(REPO / "config/demo/fixture.yaml"), option, value])
    assert exited.value.code == 78
    assert why in capsys.readouterr().err

"""The command line loads the simulator only for ``syncd simulate`` (start-up cost)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.cli import build_parser
from tests.helpers import Proc, fixture_dict, start_simulator, write_config, write_csv

LAZY = [
    "aiohttp.web",
    "syncd.runtime.ops",
    "syncd.runtime.listener",
    "syncd.runtime.webhooks",
    "syncd.runtime.changefeed",
    "syncd.sources.stream",
    "syncd.informer.watch",
    "syncd.sources.netbox",
    "syncd.sources.http",
    "syncd.sources.command",
]
"""Modules a daemon without pushes, ops or those source types never needs."""


def test_simulate_keeps_its_options() -> None:
    args = build_parser(simulate_options=True).parse_args(["simulate", "--fixture", "f.json"])
    assert args.command == "simulate" and str(args.fixture) == "f.json"
    with pytest.raises(SystemExit):  # without them the options are unknown
        build_parser(simulate_options=False).parse_args(["simulate", "--fixture", "f.json"])


def test_other_commands_do_not_import_the_simulator(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from syncd.cli import main\n"
        "try:\n"
        "    main(['check-config', '--config', sys.argv[1]])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('cmdb_simulator' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "False", done.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "syncd", "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_text.returncode == 0 and "--fixture" in help_text.stdout


def test_a_daemon_without_pushes_or_ops_does_not_import_the_server_side() -> None:
    """aiohttp's server, the webhook, stream and watch modules, and each source type's
    module, load only when configured (``syncd once`` over a file pays for none of them)."""
    code = (
        "import sys\n"
        "import syncd.cli, syncd.runtime.daemon\n"
        "print(sorted(m for m in sys.modules if m in set(sys.argv[1:])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *LAZY], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_full_cycle_over_a_file_imports_no_push_or_server_module(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """Not just the imports at start: a whole ``once`` (read, diff, sends, the full read's
    bookkeeping for pushes) over a CSV file loads none of them either."""
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(fixture_dict(switches=2, hosts=5)))
    url = start_simulator(procs, fixture)
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", [(1, 1001), (2, 1002)]))
    code = (
        "import sys\n"
        "from syncd.cli import main\n"
        "status = main(['once', '--config', sys.argv[1]])\n"
        "print(status, sorted(m for m in sys.modules if m in set(sys.argv[2:])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(cfg), *LAZY],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []"

"""The entry point holds garbage collection and pydantic's plugin scan through the
imports, then freezes what they built and collects again, the environment as it was; an
in-process caller's collector is left alone."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.support import startup

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Whatever a test does to the collector (and the plugins' variable) is undone."""
    monkeypatch.delenv(startup.PLUGINS, raising=False)
    threshold = gc.get_threshold()
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("collector")
def test_settle_leaves_an_in_process_callers_collector_alone() -> None:
    gc.enable()
    gc.set_threshold(700, 10, 10)
    frozen = gc.get_freeze_count()
    startup.settle()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.usefixtures("collector")
def test_settle_after_hold_freezes_the_heap_and_collects_again() -> None:
    gc.set_threshold(700, 11, 12)
    startup.hold()
    assert not gc.isenabled()
    built = [[i] for i in range(1000)]  # containers the "imports" built
    startup.settle()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)
    assert gc.get_threshold() == (startup.FIRST_GENERATION, 11, 12)
    built_ids = {id(x) for x in built}
    collectable = {id(o) for generation in (0, 1, 2) for o in gc.get_objects(generation)}
    assert not built_ids & collectable  # frozen: no collection walks them again


@pytest.mark.usefixtures("collector")
def test_the_plugin_scan_is_off_only_while_starting() -> None:
    startup.hold()
    assert os.environ[startup.PLUGINS] == "__all__"
    startup.settle()
    assert startup.PLUGINS not in os.environ  # a command source's child never sees it


@pytest.mark.usefixtures("collector")
def test_an_operators_own_plugin_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(startup.PLUGINS, "")  # plugins wanted
    startup.hold()
    assert os.environ[startup.PLUGINS] == ""
    startup.settle()
    assert os.environ[startup.PLUGINS] == ""


def test_the_command_holds_collections_through_its_imports_then_settles() -> None:
    code = (
        "import gc, sys\n"
        "sys.argv = ['syncd', 'check-config', '--config', sys.argv[1]]\n"
        "import syncd.__main__ as entry\n"
        "held = not gc.isenabled()\n"
        "code = entry.main()\n"
        "import os\n"
        "from pydantic.plugin import _loader\n"
        "scanned = _loader._plugins is not None\n"
        "print(held, code, gc.isenabled(), gc.get_freeze_count() > 10000,"
        " scanned, 'PYDANTIC_DISABLE_PLUGINS' in os.environ, gc.get_threshold()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "config" / "demo" / "syncd.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != startup.PLUGINS},
    )
    assert done.returncode == 0, done.stderr
    held, code_, enabled, frozen, scanned, env, first = done.stdout.splitlines()[-1].split()
    assert (held, code_, enabled, frozen) == ("True", "0", "True", "True")
    assert (scanned, env) == ("False", "False")
    assert int(first) == startup.FIRST_GENERATION

"""The entry point holds garbage collection through the imports, then freezes what they
built and collects again; an in-process caller's collector is left as it was."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.support import startheap

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector() -> Iterator[None]:
    """Whatever a test does to the collector is undone."""
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
    startheap.settle()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.usefixtures("collector")
def test_settle_after_hold_freezes_the_heap_and_collects_again() -> None:
    gc.set_threshold(700, 11, 12)
    startheap.hold()
    assert not gc.isenabled()
    built = [[i] for i in range(1000)]  # containers the "imports" built
    startheap.settle()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)
    assert gc.get_threshold() == (startheap.FIRST_GENERATION, 11, 12)
    built_ids = {id(x) for x in built}
    collectable = {id(o) for generation in (0, 1, 2) for o in gc.get_objects(generation)}
    assert not built_ids & collectable  # frozen: no collection walks them again


def test_the_command_holds_collections_through_its_imports_then_settles() -> None:
    code = (
        "import gc, sys\n"
        "sys.argv = ['syncd', 'check-config', '--config', sys.argv[1]]\n"
        "import syncd.__main__ as entry\n"
        "held = not gc.isenabled()\n"
        "code = entry.main()\n"
        "print(held, code, gc.isenabled(), gc.get_freeze_count() > 10000, gc.get_threshold()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "config" / "demo" / "syncd.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    held, code_, enabled, frozen, first = done.stdout.splitlines()[-1].split()
    assert (held, code_, enabled, frozen) == ("True", "0", "True", "True")
    assert int(first) == startheap.FIRST_GENERATION

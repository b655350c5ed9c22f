"""The architecture as checks: the layers contract catches a wrong-way import, and no module
of syncd imports in a cycle (issue 22)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.helpers import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("syncd", "cmdb_simulator"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_the_layers_contract_catches_a_wrong_way_import(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    clean = _lint(root)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # The engine reaching up into the runtime: a new module, no contract edited.
    (root / "syncd" / "engine" / "upward.py").write_text(
        "from syncd.runtime.health import Health\n\nHEALTH = Health\n", encoding="utf-8"
    )
    broken = _lint(root)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "syncd's layers: each imports only those below it BROKEN" in broken.stdout
    assert "syncd.engine.upward -> syncd.runtime.health" in broken.stdout


def test_no_module_of_syncd_imports_in_a_cycle() -> None:
    graph = grimp.build_graph("syncd")
    cycles = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("syncd") and graph.find_shortest_chain(
                importer=imported, imported=module
            ):
                cycles.add(tuple(sorted((module, imported))))
    assert not cycles, sorted(cycles)

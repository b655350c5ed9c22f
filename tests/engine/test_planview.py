"""The ``syncd plan --json`` document: the same keys for a relation that failed."""

from __future__ import annotations

from pathlib import Path

from syncd.commands.planview import plan_document, render_text
from syncd.core.batching import Mapping
from syncd.core.pairs import pack
from syncd.core.plan import RelationPlan, plan
from tests.helpers import load, write_config, write_csv

SECOND = """
[[relations]]
name = "other"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "bk_switch_uplink_host"
source = {{ type = "file", path = "{path}" }}
"""


def keys(value: object, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return {k for key, v in value.items() for k in {prefix + key} | keys(v, prefix + key + ".")}
    return set()


def test_a_failed_relation_has_every_key(tmp_path: Path) -> None:
    topology = write_csv(tmp_path / "t.csv", [(1, 1001)])
    extra = SECOND.format(path=topology)
    settings = load(write_config(tmp_path, "http://127.0.0.1:9", topology, extra=extra))
    good: RelationPlan = plan(
        "switch-host",
        {pack(1, 1001)},
        set(),
        {},
        mapping=Mapping.N_N,
        batch_size=200,
        now=0.0,
    )
    doc = plan_document(settings, [good, "the source failed"], {})
    ok, failed = doc["relations"]
    assert keys(failed) == keys(ok)
    assert failed["error"] == "the source failed" and failed["create"] == []
    assert failed["counts"]["create"] == 0 and failed["desired"] is None
    assert "ERROR: the source failed" in render_text(doc)

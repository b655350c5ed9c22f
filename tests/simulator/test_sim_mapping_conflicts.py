"""The 1:1 and 1:n checks and their texts as bk-cmdb answers them, and a delete followed at
once by a create of the same instance (what a move does).

bk-cmdb (TencentBlueKing/bk-cmdb, v3.14.x):
- ``src/source_controller/coreservice/core/association/instance.go:112-131``: 1:1 counts
  the pairs of the model association on the source instance AND on the target instance;
  either > 0 refuses with 1101052;
- ``instance.go:132-144``: 1:n counts the target instance's pairs only; > 0 refuses with
  1101061 (the source side is free);
- ``instance.go:424-432``: the batch create runs that check per detail, after the
  existence checks, and reports it in ``error_msg`` by index;
- ``resources/errors/common/default/topo_server.json:74,83`` and
  ``resources/errors/english/en/topo_server.json:74,83``: the two texts in Chinese and
  English;
- ``instance.go:174-218``: a delete removes the rows (``DeleteMany``), no tombstone, so
  the count the next create's check reads no longer includes it: a create of the same
  target right after the delete succeeds.
"""

from __future__ import annotations

import pytest
from sim_client import GATEWAYS, MANAGE, OWN, Cmdb

ONE_ONE = {
    "en": "can not create multiple instance association for a 1:1 association.",
    "zh": "关联关系为1:1的，不能同时关联多个实例",
}
ONE_N = {
    "en": "The relationship is 1:n, and multiple source model instances cannot be associated "
    "at the same time.",
    "zh": "关联关系为1:n的，不能同时关联多个源模型实例",
}


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_one_one_refuses_on_either_side(cmdb: Cmdb, gateway: str, lang: str) -> None:
    made = await cmdb.batch(gateway, [(2, 110)], OWN, lang)
    assert made.doc["data"]["success_created"].keys() == {"0"}
    # Same source (2), another target; another source, same target (110); a free pair.
    answer = await cmdb.batch(gateway, [(2, 111), (3, 110), (3, 111)], OWN, lang)
    errors = answer.doc["data"]["error_msg"]
    assert errors == {"0": ONE_ONE[lang], "1": ONE_ONE[lang]}
    assert answer.doc["data"]["success_created"].keys() == {"2"}
    assert cmdb.sim.pairs(OWN) == {(2, 110), (3, 111)}


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_one_n_refuses_a_second_source_only(cmdb: Cmdb, gateway: str, lang: str) -> None:
    await cmdb.batch(gateway, [(2, 110)], MANAGE, lang)
    # Another source for target 110: refused; the same source for another target: fine.
    answer = await cmdb.batch(gateway, [(3, 110), (2, 111)], MANAGE, lang)
    assert answer.doc["data"]["error_msg"] == {"0": ONE_N[lang]}
    assert answer.doc["data"]["success_created"].keys() == {"1"}
    assert cmdb.sim.pairs(MANAGE) == {(2, 110), (2, 111)}


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize(
    ("asst", "old", "new"), [(MANAGE, (2, 110), (3, 110)), (OWN, (2, 110), (2, 111))]
)
async def test_a_delete_then_at_once_a_create_of_the_same_instance(
    cmdb: Cmdb, gateway: str, asst: str, old: tuple[int, int], new: tuple[int, int]
) -> None:
    made = await cmdb.batch(gateway, [old], asst)
    old_id = made.doc["data"]["success_created"]["0"]
    refused = await cmdb.batch(gateway, [new], asst)
    assert refused.doc["data"]["error_msg"].keys() == {"0"}
    deleted = await cmdb.call(
        gateway, "delete_related_inst_asso", {"bk_obj_id": "bk_switch", "id": [old_id]}
    )
    assert deleted.doc["result"] is True
    moved = await cmdb.batch(gateway, [new], asst)
    assert moved.doc["data"]["success_created"].keys() == {"0"}
    assert moved.doc["data"]["error_msg"] == {}
    assert cmdb.sim.pairs(asst) == {new}
    # Deleting the same id again is not an error (unknown ids are skipped).
    again = await cmdb.call(
        gateway, "delete_related_inst_asso", {"bk_obj_id": "bk_switch", "id": [old_id]}
    )
    assert again.doc["result"] is True

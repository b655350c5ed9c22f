"""Full reads of associations page by key (``id > last``), so a concurrent delete hides nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from cmdb_simulator import Simulator
from syncd.cmdb import apis
from syncd.cmdb.apis import PAGE_LIMIT
from syncd.cmdb.client import CmdbClient
from syncd.cmdb.keyset import keyset_rules, next_key
from syncd.config.settings import CmdbSettings
from tests.helpers import ASST

# 6 switches x 200 hosts: 1,200 associations, pages of 500, 500 and 200.
EXISTING = [(s, 1000 + h) for s in range(1, 7) for h in range(1, 201)]


def settings(url: str, gateway: str) -> CmdbSettings:
    return CmdbSettings(
        url=url,
        gateway=gateway,
        app_code="syncd",
        app_secret=SecretStr("s3cret-app"),
        rate_limit=1000,
        concurrency=4,
        max_retries=0,
        timeout=10,
    )


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_a_delete_between_pages_hides_no_later_pair(
    sim_factory: Callable[..., Simulator], gateway: str
) -> None:
    sim = sim_factory(switches=6, hosts=200, existing=EXISTING)
    before = {(r["bk_inst_id"], r["bk_asst_inst_id"]): r["id"] for r in sim.associations(ASST)}
    assert len(before) == 1200
    seen: dict[tuple[int, int], int] = {}
    pages = 0
    async with (
        sim.running(host="127.0.0.1", port=0) as url,
        CmdbClient(settings(url, gateway)) as client,
    ):
        async for page in client.iter_associations("bk_switch", ASST):
            pages += 1
            for src, dst, assoc_id in page:
                seen[(src, dst)] = assoc_id
            if pages == 1:
                # Someone deletes rows on the page just read, before the next is asked for.
                assert sim.delete_pairs(ASST, [(s, d) for s, d, _ in page[:3]]) == 3
        # The same race against offset paging skips the first rows of the next page.
        offset_ids = await offset_read_with_delete(client, sim)
    assert pages == 3
    assert seen == before  # every pair, each with its id: nothing after the delete was skipped
    first_of_page_two = sorted(before.values())[PAGE_LIMIT + 3]
    assert first_of_page_two not in offset_ids


async def offset_read_with_delete(client: CmdbClient, sim: Simulator) -> set[int]:
    """What the old pager did: pages by ``start``; the first page's rows vanish after it."""
    ids: set[int] = set()
    for start in (0, PAGE_LIMIT):
        body = {
            "conditions": {
                "condition": "AND",
                "rules": [{"field": "bk_obj_asst_id", "operator": "equal", "value": ASST}],
            },
            "fields": ["id"],
            "page": {"start": start, "limit": PAGE_LIMIT, "sort": "id"},
        }
        answer = await client.call(apis.SEARCH_ASSOCIATIONS, body, {"bk_obj_id": "bk_switch"})
        rows: list[dict[str, Any]] = answer.data["info"]
        ids.update(int(r["id"]) for r in rows)
        if start == 0:
            doomed = {int(r["id"]) for r in rows[:3]}
            gone = [
                (r["bk_inst_id"], r["bk_asst_inst_id"])
                for r in sim.associations(ASST)
                if r["id"] in doomed
            ]
            assert sim.delete_pairs(ASST, gone) == 3
    return ids


async def test_lookups_page_by_key_across_more_than_one_page(
    sim_factory: Callable[..., Simulator],
) -> None:
    sim = sim_factory(switches=6, hosts=200, existing=EXISTING)
    ids = {(r["bk_inst_id"], r["bk_asst_inst_id"]): r["id"] for r in sim.associations(ASST)}
    async with (
        sim.running(host="127.0.0.1", port=0) as url,
        CmdbClient(settings(url, "apigw")) as client,
    ):
        found = await client.lookup_association_ids("bk_switch", ASST, list(ids))
    assert found == ids
    assert sim.stats()["requests_by_api"]["search_instance_associations"] == 3


def test_keyset_rules_and_next_key() -> None:
    extra = [{"field": "bk_inst_id", "operator": "in", "value": [1]}]
    assert keyset_rules(extra, None) == extra
    assert keyset_rules(extra, 42)[-1] == {"field": "id", "operator": "greater", "value": 42}
    assert len(extra) == 1  # the caller's rules are not touched
    assert next_key([{"id": 3}, {"id": "9"}, {"id": None}, {}], None) == 9
    assert next_key([{"id": 3}, {"id": 9}], 9) is None  # no progress: the server ignored the key
    assert next_key([{"bk_inst_id": 1}], 5) is None  # no id at all

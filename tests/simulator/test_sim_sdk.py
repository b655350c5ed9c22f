"""BlueKing's own ESB SDK (``bkapi-component-open``) talks to the simulator unchanged.

The SDK is synchronous (requests), so each call runs in a worker thread while the
simulator serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bkapi_component.open.client import Client  # type: ignore[import-untyped]
from sim_client import APP, CONNECT, Cmdb


def sdk(cmdb: Cmdb, language: str | None = None) -> Any:
    client = Client(endpoint=cmdb.url, bk_api_ver="v2", language=language)
    client.update_bkapi_authorization(**APP, bk_username="admin")
    return client


async def test_sdk_batch_create_and_search(cmdb: Cmdb) -> None:
    client = sdk(cmdb)
    body = {
        "bk_obj_id": "bk_switch",
        "bk_asst_obj_id": "host",
        "bk_obj_asst_id": CONNECT,
        "details": [
            {"bk_inst_id": 2, "bk_asst_inst_id": 110},
            {"bk_inst_id": 3, "bk_asst_inst_id": 999},
        ],
    }
    # Auth on: the stale host 999 fails the whole request in the API server's parse.
    refused = await asyncio.to_thread(client.cc.batch_create_instance_association, body)
    assert refused["result"] is False and refused["code"] == 1199045
    assert refused["message"] == "host 999 has no relations" and refused["request_id"]
    body["details"] = body["details"][:1]
    made = await asyncio.to_thread(client.cc.batch_create_instance_association, body)
    assert made["result"] is True and made["data"]["success_created"] == {"0": 2}
    found = await asyncio.to_thread(
        client.cc.search_instance_associations,
        {"bk_obj_id": "bk_switch", "page": {"start": 0, "limit": 10, "sort": "id"}},
    )
    assert [r["id"] for r in found["data"]["info"]] == [1, 2]


async def test_sdk_language_header(cmdb: Cmdb) -> None:
    client = sdk(cmdb, language="zh-cn")
    answer = await asyncio.to_thread(
        client.cc.count_instance_associations, {"bk_obj_id": "bk_switch", "conditions": []}
    )
    assert (answer["code"], answer["message"]) == (1199000, "反序列化JSON数据失败")

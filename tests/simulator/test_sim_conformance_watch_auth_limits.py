"""The second audit's divergences (/work/shared/docs/bk-cmdb-audit-2.md, table A), each
pinned to its source and checked on every release line the simulator answers as.

Paths are in TencentBlueKing/bk-cmdb at master 111e7ac66a unless prefixed: ``svc/`` =
src/scene_server/topo_server/service/, ``core/`` = src/source_controller/coreservice/
core/association/, ``flow/`` = src/source_controller/cacheservice/event/flow/,
``apisix/`` = blueking-apigateway-apisix src/apisix/plugins/.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sim_client import CONNECT, GATEWAYS, LANGS, Cmdb, fixture_doc

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from cmdb_simulator.chain import NO_EVENT_CURSOR
from cmdb_simulator.envelope import code_of
from cmdb_simulator.limits import FixedWindow

VERSIONS = ("3.10", "3.12", "3.14", "3.15")
SELF = "host_connect_host"
OTHER = {"bk_app_code": "other", "bk_app_secret": "other-secret"}
HOSTS_PATH = "/api/v3/hosts/list_hosts_without_app"


def _doc() -> dict[str, Any]:
    doc = fixture_doc()
    doc["apps"][1] = OTHER | {"deny": ["list_hosts_without_biz"]}
    doc["model_associations"].append(
        {"bk_obj_asst_id": SELF, "bk_obj_id": "host", "bk_asst_id": "connect",
         "bk_asst_obj_id": "host", "mapping": "n:n"}
    )  # fmt: skip
    return doc


async def _cmdb(version: str, **options: Any) -> AsyncIterator[Cmdb]:
    opts = SimulatorOptions(cmdb_version=version, **options)
    sim = Simulator(Fixture.from_dict(_doc()), opts)
    async with sim.running(host="127.0.0.1", port=0) as url, aiohttp.ClientSession() as session:
        yield Cmdb(sim, url, session)


@pytest.fixture(params=VERSIONS)
async def line(request: pytest.FixtureRequest) -> AsyncIterator[Cmdb]:
    """The simulator answering as each release line (auth on)."""
    async for cmdb in _cmdb(request.param):
        yield cmdb


def _filter_refusal(doc: dict[str, Any], code: int, message: str, gateway: str) -> None:
    """A BaseResp the API server's own filter wrote: ``bk_error_code`` even behind the
    API gateway (never renamed, src/apiserver/service/http.go:145-183), no ``data``."""
    if gateway == "apigw":
        assert doc == {"result": False, "bk_error_code": code, "bk_error_msg": message,
                       "permission": doc.get("permission")}  # fmt: skip
    else:  # ESB rewrites every answer (esb/components/bk/apisv2/cc/toolkit/tools.py:93-123)
        assert (doc["code"], doc["message"], doc["data"]) == (code, message, None)


async def _events(cmdb: Cmdb, gateway: str) -> list[dict[str, Any]]:
    body = {"bk_cursor": NO_EVENT_CURSOR}
    answer = await cmdb.call(gateway, "resource_watch", body, {"bk_resource": "inst_asst"})
    assert code_of(answer.doc) == 0, answer.doc
    events: list[dict[str, Any]] = answer.doc["data"]["bk_events"]
    return events


# --- W1: two create events per batch-created association ----------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_batch_create_gives_two_events_per_pair(line: Cmdb, gateway: str) -> None:
    """save() inserts the row into the source's table, then the target's
    (core/instance.go:149-172), and the batch handler opens no transaction
    (svc/association.go:1166-1182; compare the single create's AutoRunTxn at :1148 and
    the deletes' at :1198,1235). Each insert is its own change-stream event with its own
    cluster time, hence cursor (flow/parser.go:142-159, src/common/watch/cursor.go:
    191-244); the flow drops only identical cursors (flow/flow.go:252-267). So: two
    ``create`` events per batch-created pair, same ``bk_detail.id``, different
    ``bk_cursor``; one for a single create and one for a delete. The same holds on
    release-v3.15.1 (instance.go:166-188, svc/association.go:1177-1193)."""
    assert code_of((await line.batch(gateway, [(2, 103), (3, 104)])).doc) == 0
    single = {"bk_obj_asst_id": CONNECT, "bk_inst_id": 4, "bk_asst_inst_id": 105}
    assert code_of((await line.call(gateway, "add_instance_association", single)).doc) == 0
    [row] = [r for r in line.sim.associations(CONNECT) if r["bk_inst_id"] == 2]
    delete = {"bk_obj_id": "bk_switch", "id": [row["id"]]}
    assert code_of((await line.call(gateway, "delete_related_inst_asso", delete)).doc) == 0
    events = await _events(line, gateway)
    seen = [(e["bk_event_type"], e["bk_detail"]["bk_inst_id"]) for e in events]
    assert seen == [("create", 2), ("create", 2), ("create", 3), ("create", 3),
                    ("create", 4), ("delete", 2)]  # fmt: skip
    for first, second in (events[0:2], events[2:4]):
        # Two inserts, two documents: the same row under its own ObjectId each (W2).
        assert first["bk_detail"]["_id"] != second["bk_detail"]["_id"]
        assert {**first["bk_detail"], "_id": ""} == {**second["bk_detail"], "_id": ""}
        assert first["bk_cursor"] != second["bk_cursor"]
    # Both cursors are watchable: going on from the first gives the second.
    after = await line.call(
        gateway, "resource_watch", {"bk_cursor": events[0]["bk_cursor"]},
        {"bk_resource": "inst_asst"},
    )  # fmt: skip
    assert after.doc["data"]["bk_events"][0] == events[1]
    assert line.sim.stats()["watch_events_total"] == 6


async def test_a_self_association_is_inserted_once(line: Cmdb) -> None:
    """``do not insert twice for self related association`` (core/instance.go:164-167):
    a host-to-host pair is one insert, one event."""
    body = {"bk_obj_id": "host", "bk_asst_obj_id": "host", "bk_obj_asst_id": SELF,
            "details": [{"bk_inst_id": 101, "bk_asst_inst_id": 102}]}  # fmt: skip
    answer = await line.call("apigw", "batch_create_instance_association", body)
    assert code_of(answer.doc) == 0
    assert [e["bk_event_type"] for e in await _events(line, "apigw")] == ["create"]


# --- W5: a watch the release cannot authorise --------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", LANGS)
async def test_unauthorisable_watch_is_1199046_at_once(line: Cmdb, gateway: str, lang: str) -> None:
    """With auth on, the watch parse passes for any resource (src/ac/parser/event.go:71-76,
    ``Action: meta.Action(resource)``); ``AdaptAuthOptions`` then finds no IAM action
    (src/ac/iam/iam.go:1308-1312, adaptor.go:196-203: ``unsupported type``) and the auth
    filter answers its BaseResp 1199046 (src/apiserver/service/filter.go:281-290;
    resources/errors/english/en/common.json:45 ``Authorize request failed.``,
    default/common.json:46 ``鉴权失败``): no ``data``, and none of the event server's
    0.5 s pause, which the request never reaches."""
    line.sim.options.watch_error_delay_s = 30.0  # a paused answer would time out below
    answer = await asyncio.wait_for(
        line.call(gateway, "resource_watch", {}, {"bk_resource": "inst_assts"}, lang=lang), 10.0
    )
    message = "Authorize request failed." if lang == "en" else "鉴权失败"
    _filter_refusal(answer.doc, 1199046, message, gateway)
    assert answer.doc["permission"] is None


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_inst_asst_before_3_10_10_cannot_be_authorised(gateway: str) -> None:
    """release-v3.10.9:src/ac/iam/adaptor.go:386-394 has no ``WatchInstAsst``, and its
    parser reads a sub resource only for object and mainline instances
    (release-v3.10.9:src/ac/parser/event.go:67-85): auth on, every inst_asst watch is
    1199046, with or without ``bk_sub_resource``; auth off, the event server's 1199998
    ``unsupported cursor type inst_asst`` (release-v3.10.9 event/util.go:49)."""
    async for cmdb in _cmdb("3.10.9"):
        for body in ({}, {"bk_filter": {"bk_sub_resource": "nope"}}):
            answer = await cmdb.call(gateway, "resource_watch", body, {"bk_resource": "inst_asst"})
            _filter_refusal(answer.doc, 1199046, "Authorize request failed.", gateway)
        cmdb.sim.options.auth = False
        cmdb.sim.options.watch_error_delay_s = 0.0
        answer = await cmdb.call(gateway, "resource_watch", {}, {"bk_resource": "inst_asst"})
        assert code_of(answer.doc) == 1199998
        assert answer.doc.get("message", answer.doc.get("bk_error_msg")) == (
            "unsupported cursor type inst_asst"
        )


# --- A1: list_hosts_without_biz is authorised by the API server ---------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("page", [{"start": 0, "limit": 10}, {"start": -1, "limit": 10},
                                  {"start": 0, "limit": 5000}])  # fmt: skip
async def test_list_hosts_denial_comes_from_the_auth_filter(
    line: Cmdb, gateway: str, page: dict[str, int]
) -> None:
    """The parser makes list_hosts_without_app ``{HostInstance, FindMany}``
    (src/ac/parser/host.go:715-727), which the adaptor maps to ``view_resource_pool_host``
    (src/ac/iam/adaptor.go:175-189); the host server does no auth of its own
    (src/scene_server/host_server/service/findhost.go:649-686). So a denial is the auth
    filter's 9900403 BaseResp (filter.go:301-328): ``bk_error_code`` kept behind the API
    gateway, no ``data``, and before the page checks (metadata/hostserver.go:457-476)."""
    body = {"page": page}
    if gateway == "apigw":
        auth = OTHER | {"bk_username": "admin"}
        answer = await line.gw("POST", HOSTS_PATH, body, auth=auth)
    else:
        answer = await line.esb("list_hosts_without_biz", body, creds=OTHER | {"bk_username": "a"})
    _filter_refusal(answer.doc, 9900403, "Do not have access permission.", gateway)
    [action] = answer.doc["permission"]["actions"]
    assert action["id"] == "view_resource_pool_host"
    # The app allowed to read gets the page checks as before.
    allowed = await line.call(gateway, "list_hosts_without_biz", body)
    assert code_of(allowed.doc) == (0 if page == {"start": 0, "limit": 10} else 1199006)


# --- A2: "no matched rules" ---------------------------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("details", [[], None, "absent"])
async def test_batch_create_without_details_matches_no_rule(
    line: Cmdb, gateway: str, details: Any
) -> None:
    """With no detail ``instances.Array()`` is empty and the parser adds no resource
    (src/ac/parser/topolatest.go:678-731); the chain's finalizer then fails with
    ``no matched rules`` (src/ac/parser/chain.go:215-224), answered as the filter's
    1199045 (filter.go:266-275): topo's 1199038 is never reached."""
    body: dict[str, Any] = {"bk_obj_id": "bk_switch", "bk_asst_obj_id": "host",
                            "bk_obj_asst_id": CONNECT, "details": details}  # fmt: skip
    if details == "absent":
        del body["details"]
    answer = await line.call(gateway, "batch_create_instance_association", body)
    _filter_refusal(answer.doc, 1199045, "no matched rules", gateway)
    line.sim.options.auth = False  # auth off: the topo server's own check
    answer = await line.call(gateway, "batch_create_instance_association", body)
    assert code_of(answer.doc) == 1199038


async def test_delete_by_a_non_numeric_id_matches_no_rule(line: Cmdb) -> None:
    """``DELETE /api/v3/delete/instassociation/<obj>/abc``: the route regexp needs
    ``[0-9]+`` (src/ac/parser/topolatest.go:482) and no other rule matches, so the chain's
    finalizer answers 1199045 ``no matched rules`` (chain.go:215-224), not topo's 1199009."""
    answer = await line.gw("DELETE", "/api/v3/delete/instassociation/bk_switch/abc", {})
    _filter_refusal(answer.doc, 1199045, "no matched rules", "apigw")


# --- L1, L2: the API gateway's limits -----------------------------------------------------


def test_fixed_window_refuses_until_the_window_ends_and_allows_2x_across_a_boundary() -> None:
    """bk-resource-rate-limit's Redis script: a key without TTL is set to ``limit - 1``
    with a TTL of the period, else decremented (apisix/bk-rate-limit/rate-limit-redis.lua:
    76-84); ``remaining < 0`` is refused (:182-183). A spent window refuses everything
    until it ends; up to twice the limit passes across a boundary."""
    now = [100.0]
    window = FixedWindow(5, clock=lambda: now[0])
    now[0] = 100.9
    assert [window.take().allowed for _ in range(6)] == [True] * 5 + [False]
    now[0] = 101.85  # 0.95 s later: still the window the first request opened
    assert not window.take().allowed
    now[0] = 101.9  # that window ended: a new one, and its five pass at once
    burst = [window.take() for _ in range(5)]
    assert all(d.allowed for d in burst)  # ten requests within 0.05 s of each other
    assert [d.remaining for d in burst] == [4, 3, 2, 1, 0]
    refused = window.take()
    assert (refused.allowed, refused.remaining, refused.reset) == (False, 0, 1)
    half = FixedWindow(0.5, clock=lambda: now[0])
    assert [half.take().allowed for _ in range(2)] == [True, False]
    now[0] += 2.0
    assert half.take().allowed


async def test_apigw_rate_limit_window_over_http() -> None:
    """The gateway's window over HTTP: refused until the window ends, then a fresh one
    (apisix/bk-rate-limit/rate-limit-redis.lua:76-84,182-183); one key per app, stage and
    resource (apisix/bk-resource-rate-limit.lua:67-82)."""
    async for cmdb in _cmdb("3.14", rate_limit=3):
        path = "/api/v3/count/instance_associations/object/bk_switch"
        statuses = [(await cmdb.gw("POST", path, {})).status]
        opened_by = time.monotonic()  # the window opened when the first request arrived
        statuses += [(await cmdb.gw("POST", path, {})).status for _ in range(3)]
        assert statuses == [200, 200, 200, 429]
        other_stage = await cmdb.gw("POST", path, {}, stage="test")
        assert other_stage.status == 200  # the stage is part of the key
        await asyncio.sleep(max(0.0, opened_by + 1.05 - time.monotonic()))
        assert (await cmdb.gw("POST", path, {})).status == 200


async def test_concurrency_limit_is_per_app_before_the_rate_limit() -> None:
    """bk-concurrency-limit counts per gateway, stage and app
    (apisix/bk-concurrency-limit.lua:44-58) and says so: ``Request concurrency exceeds
    [key="bk-cmdb:<stage>:<app>"]`` (:83-89, apisix/bk-core/errorx.lua:93-116). Its
    priority 17660 is above bk-resource-rate-limit's 17653, so a request it refuses
    spends none of the rate limit."""
    async for cmdb in _cmdb("3.14", max_in_flight=1, latency_ms=300, rate_limit=3):
        path = "/api/v3/count/instance_associations/object/bk_switch"
        other = OTHER | {"bk_username": "admin"}
        answers = await asyncio.gather(
            cmdb.gw("POST", path, {}),
            cmdb.gw("POST", path, {}, auth=other),
            _later(cmdb.gw("POST", path, {})),
        )
        assert [a.status for a in answers] == [200, 200, 429]
        refused = answers[2].doc
        assert (refused["code"], refused["message"]) == (
            1642904,
            'Request concurrency exceeds [key="bk-cmdb:prod:syncd"]',
        )
        assert "X-Bkapi-RateLimit-Remaining" not in answers[2].headers
        follow = await cmdb.gw("POST", path, {})
        assert follow.headers["X-Bkapi-RateLimit-Remaining"] == "1"  # 3 - 2 taken


async def _later(call: Any) -> Any:
    await asyncio.sleep(0.1)  # the first request of the app is in flight by now
    return await call

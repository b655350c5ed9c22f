"""The second audit's low-severity divergences (bk-cmdb-audit-2.md, table A: W2-W4, W6-W8,
A3, A4), each pinned to the source it follows.

Paths are in TencentBlueKing/bk-cmdb at master 111e7ac66a unless prefixed with a tag;
``cs/`` = src/source_controller/cacheservice/, ``esb/`` = blueking-apigateway
src/esb/esb/. gjson is tidwall/gjson v1.14.2 (bk-cmdb's go.mod:49).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sim_client import CONNECT, GATEWAYS, Cmdb, fixture_doc

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from cmdb_simulator.authparse import _go_int, _go_value
from cmdb_simulator.chain import NO_EVENT_CURSOR, EventChain
from cmdb_simulator.envelope import code_of
from cmdb_simulator.version import CmdbVersion
from cmdb_simulator.watch import (
    Release,
    WatchSettings,
    hold_seconds,
    serve,
    watchable,
)

VERSIONS = ("3.10", "3.12", "3.14", "3.15")
WATCH = {"bk_resource": "inst_asst"}


async def _cmdb(version: str = "3.14", **options: Any) -> AsyncIterator[Cmdb]:
    options.setdefault("watch_error_delay_s", 0.0)
    opts = SimulatorOptions(cmdb_version=version, **options)
    sim = Simulator(Fixture.from_dict(fixture_doc()), opts)
    async with sim.running(host="127.0.0.1", port=0) as url, aiohttp.ClientSession() as session:
        yield Cmdb(sim, url, session)


@pytest.fixture(params=VERSIONS)
async def line(request: pytest.FixtureRequest) -> AsyncIterator[Cmdb]:
    """The simulator answering as each release line (auth on)."""
    async for cmdb in _cmdb(request.param):
        yield cmdb


def _message(doc: dict[str, Any]) -> Any:
    return doc.get("message", doc.get("bk_error_msg"))


# --- W4: a successful watch has no permission key -----------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_successful_watch_has_no_permission_key(line: Cmdb, gateway: str) -> None:
    """The event server answers with ``RespString`` (event_server/service/watch.go:47),
    which writes ``{"result": true, "bk_error_code": 0, "bk_error_msg": "success",
    "data": ...}`` and nothing else (src/common/http/rest/contexts.go:92-108). Behind the
    API gateway from 3.12.4 the keys are renamed to code/message
    (src/apiserver/service/http.go:145-183); the ESB's format_response always sets
    ``permission: response.get("permission")`` (cc/toolkit/tools.py:93-123). Other APIs
    (``metadata.Response``) keep their ``permission: null``."""
    answer = await line.call(gateway, "resource_watch", {}, WATCH)
    other = await line.call(
        gateway, "search_instance_associations", {"page": {"limit": 10}}, {"bk_obj_id": "bk_switch"}
    )
    renamed = line.sim.version.apigw_renames_keys
    if gateway == "esb":
        assert answer.doc["permission"] is None and "permission" in answer.doc
    elif renamed:
        assert list(answer.doc) == ["result", "code", "message", "data"]
    else:
        assert list(answer.doc) == ["result", "bk_error_code", "bk_error_msg", "data"]
    assert answer.doc["data"]["bk_watched"] is False
    assert code_of(other.doc) == 0 and other.doc["permission"] is None


# --- W3: the hold's whole-second check ----------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.3, 1.0, 2.0, 20.0])
def test_hold_follows_the_whole_second_check(threshold: float) -> None:
    """``start := time.Now().Unix()``, then after each 250 ms sleep ``time.Now().Unix()-start
    > timeoutWatchLoopSeconds`` (cs/event/watch/watch.go:584,610-614): the hold ends at
    the first poll whose whole second is more than the threshold past the start's, so
    it is longer than the threshold and at most a second longer (plus a poll for a
    fractional one)."""
    for hundredth in range(100):
        start = 1_700_000_000 + hundredth / 100
        held = hold_seconds(start, threshold)
        assert threshold < held <= threshold + 1.25
        assert held / 0.25 == int(held / 0.25)  # only a poll ends it
        assert math.floor(start + held) - math.floor(start) > threshold
        earlier = held - 0.25
        assert earlier <= threshold or math.floor(start + earlier) - math.floor(start) <= threshold
    assert hold_seconds(1_700_000_000.0, 20.0) == 21.0
    assert hold_seconds(1_700_000_000.99, 20.0) == 20.25


async def test_a_held_watch_lasts_past_its_threshold() -> None:
    """A threshold of 0 still holds until the wall clock's second turns (0.25-1 s):
    bk-cmdb compares whole seconds after a 250 ms sleep, never answers at once."""
    async for cmdb in _cmdb(watch_timeout_s=0.0):
        now = await cmdb.call("apigw", "resource_watch", {}, WATCH)
        cursor = now.doc["data"]["bk_events"][-1]["bk_cursor"]
        began = time.monotonic()
        held = await cmdb.call("apigw", "resource_watch", {"bk_cursor": cursor}, WATCH)
        assert time.monotonic() - began >= 0.24
        assert held.doc["data"]["bk_watched"] is False


# --- W2: a watch detail is the stored document --------------------------------------------

_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_detail_is_the_stored_document(line: Cmdb, gateway: str) -> None:
    """A create's detail is the change stream's fullDocument as a map, marshalled with
    sorted keys (src/storage/stream/event/watch.go:262-268, src/common/json/json.go:25-30):
    the ``InstAsst`` struct, ``bk_biz_id`` 0 included (src/common/metadata/association.go:
    555-575), and each insert's own ``_id`` ObjectId. A delete's is the del-archive copy
    with ``_id`` removed (src/storage/dal/mongo/local/mongo.go:844-888)."""
    assert code_of((await line.batch(gateway, [(2, 103)])).doc) == 0
    [row] = [r for r in line.sim.associations(CONNECT) if r["bk_inst_id"] == 2]
    delete = {"bk_obj_id": "bk_switch", "id": [row["id"]]}
    assert code_of((await line.call(gateway, "delete_related_inst_asso", delete)).doc) == 0
    answer = await line.call(gateway, "resource_watch", {"bk_cursor": NO_EVENT_CURSOR}, WATCH)
    first, second, gone = answer.doc["data"]["bk_events"]
    for event in (first, second):
        detail = event["bk_detail"]
        assert list(detail) == sorted(detail)
        assert _OBJECT_ID.fullmatch(detail["_id"])
        assert detail["bk_biz_id"] == 0
        assert {k: v for k, v in detail.items() if k not in ("_id", "bk_biz_id")} == row
        # The ObjectId starts with the insert's second, which the cursor's cluster time has.
        assert abs(int(detail["_id"][:8], 16) - time.time()) < 60
    assert first["bk_detail"]["_id"] != second["bk_detail"]["_id"]
    assert gone["bk_detail"] == dict(sorted((row | {"bk_biz_id": 0}).items()))
    asked = {"bk_cursor": NO_EVENT_CURSOR, "bk_fields": ["bk_biz_id", "_id", "id"]}
    cut = await line.call(gateway, "resource_watch", asked, WATCH)
    details = [e["bk_detail"] for e in cut.doc["data"]["bk_events"]]
    assert [list(d) for d in details] == [["bk_biz_id", "_id", "id"]] * 3
    assert [d["bk_biz_id"] for d in details] == [0, 0, 0]
    assert details[0]["_id"] == first["bk_detail"]["_id"] and details[2]["_id"] is None


# --- W6: 3.10.10 does not look again when the hold ends -----------------------------------


@pytest.mark.parametrize(("version", "looks_again"), [("3.10.10", False), ("3.10.11", True),
                                                      ("3.10", True), ("3.15", True)])  # fmt: skip
async def test_only_3_10_10_skips_an_event_of_the_last_poll(
    version: str, looks_again: bool
) -> None:
    """release-v3.10.10 (cs/event/watch/watch.go:447-473) answers a hold that timed out
    with the newest node's cursor without looking for matching events again, so an event
    that lands in the last 250 ms is skipped; 77543aee8b, first in release-v3.10.11
    (watch.go:468-480 there), looks again. Here the hold is one poll long (the wall clock
    at .9 of a second, threshold 0) and the event comes in the middle of it."""
    release = Release.of(CmdbVersion.parse(version))
    assert release.looks_again is looks_again
    chain = EventChain()
    row = {"id": 7, "bk_obj_id": "bk_switch", "bk_asst_obj_id": "host", "bk_inst_id": 2,
           "bk_asst_inst_id": 103, "bk_obj_asst_id": CONNECT, "bk_asst_id": "connect"}  # fmt: skip
    chain.record(("create", dict(row, id=6)))
    chain.flush()
    start = chain.latest()
    assert start is not None
    settings = WatchSettings(hold_s=0.0, error_delay_s=0.0, wall=lambda: 1_700_000_000.9)

    def late_event() -> None:
        chain.record(("create", row))
        chain.flush()

    asyncio.get_running_loop().call_later(0.1, late_event)
    data = await serve(chain, "inst_asst", {"bk_cursor": start.cursor}, settings, release=release)
    newest = chain.latest()
    assert newest is not None and newest.id == start.id + 1
    if looks_again:
        assert data["bk_watched"] is True
        assert [e["bk_detail"]["id"] for e in data["bk_events"]] == [7]
    else:
        assert data == {"bk_watched": False, "bk_events": [{
            "bk_cursor": newest.cursor, "bk_resource": "inst_asst", "bk_event_type": "",
            "bk_detail": None}]}  # fmt: skip


# --- W7: what each release can watch ------------------------------------------------------

_KUBE = {"kube_cluster", "kube_node", "kube_namespace", "kube_workload", "kube_pod"}


def test_watchable_resources_per_release() -> None:
    """``GetResourceKeyWithCursorType``: release-v3.10.51 has no plat, project or kube_*
    (cs/event/util.go:26-59 there), biz_set and biz_set_relation come in release-v3.10.12,
    inst_asst in 3.10.10; v3.12.x and master know all 20 (cs/event/util.go:30-51);
    release-v3.15.1 drops kube_* (cs/event/util.go:30-46 there)."""
    full = watchable(CmdbVersion.parse("3.14"))
    assert len(full) == 20
    assert watchable(CmdbVersion.parse("3.12")) == full
    assert watchable(CmdbVersion.parse("3.15")) == full - _KUBE
    assert watchable(CmdbVersion.parse("3.10")) == full - _KUBE - {"plat", "project"}
    v3_10_11 = watchable(CmdbVersion.parse("3.10.11"))
    assert v3_10_11 == full - _KUBE - {"plat", "project", "biz_set", "biz_set_relation"}
    assert "inst_asst" not in watchable(CmdbVersion.parse("3.10.9"))


@pytest.mark.parametrize(
    ("version", "resource", "auth_on", "auth_off"),
    [
        ("3.10", "plat", 1199046, 1199998),  # no WatchPlat (release-v3.10.51 adaptor.go:398-409)
        ("3.10", "kube_pod", 1199046, 1199998),
        ("3.10.11", "biz_set", 1199046, 1199998),
        ("3.10.12", "biz_set", 0, 0),
        ("3.12", "project", 0, 0),
        ("3.14", "kube_pod", 0, 0),
        # release-v3.15.1's IAM still knows kube_pod (adaptor.go:399-416), its cache not.
        ("3.15", "kube_pod", 1199998, 1199998),
        ("3.15", "plat", 0, 0),
    ],
)
async def test_unknown_resource_per_release(
    version: str, resource: str, auth_on: int, auth_off: int
) -> None:
    """Auth on, a resource the release's IAM adaptor has no action for is the auth filter's
    1199046 (src/ac/iam/iam.go:1308-1312); one its cache service does not know is
    1199998 ``unsupported cursor type <resource>`` (cs/event/util.go:53-61)."""
    async for cmdb in _cmdb(version):
        for code, auth in ((auth_on, True), (auth_off, False)):
            cmdb.sim.options.auth = auth
            answer = await cmdb.call("apigw", "resource_watch", {}, {"bk_resource": resource})
            assert code_of(answer.doc) == code, (auth, answer.doc)
            if code == 1199998:
                assert _message(answer.doc) == f"unsupported cursor type {resource}"


@pytest.mark.parametrize(("version", "code"), [("3.10", 1199998), ("3.14", 0), ("3.15", 1199998)])
async def test_kube_workload_sub_resource_per_release(version: str, code: int) -> None:
    """``Validate`` lets a sub resource through for kube_workload only where the release
    has it (src/common/watch/watch.go:76-82; release-v3.10.51 and release-v3.15.1:
    ObjectBase, MainlineInstance, InstAsst only)."""
    async for cmdb in _cmdb(version, auth=False):
        body = {"bk_filter": {"bk_sub_resource": "deployment"}}
        answer = await cmdb.call("apigw", "resource_watch", body, {"bk_resource": "kube_workload"})
        assert code_of(answer.doc) == code
        if code:
            assert _message(answer.doc) == "kube_workload event cannot have sub resource"


# --- W8: an ESB call without its path variable --------------------------------------------


@pytest.mark.parametrize(
    ("api", "body", "missing"),
    [
        ("resource_watch", {}, "bk_resource"),
        ("search_instance_associations", {"condition": {}}, "bk_obj_id"),
        ("count_instance_associations", {"condition": {}}, "bk_obj_id"),
        ("delete_instance_association", {}, "bk_obj_id"),
        ("delete_instance_association", {"bk_obj_id": "bk_switch"}, "id"),
    ],
)
async def test_esb_call_without_its_path_variable(
    api: str, body: dict[str, Any], missing: str
) -> None:
    """The component formats its dest_path (``/api/v3/event/watch/resource/{bk_resource}``,
    docs/apidoc/cc/cc.yaml:882-890; ``.../object/{bk_obj_id}``, :1128-1135) with the
    call's fields; a missing one raises KeyError, answered as ARGUMENT_ERROR 1306406
    ``Parameters error, param <name> is required`` (esb/components/component.py:100-106)
    before the CMDB is asked (so no 0.5 s watch pause)."""
    async for cmdb in _cmdb(watch_error_delay_s=30.0):
        answer = await asyncio.wait_for(cmdb.esb(api, body), 10.0)
        assert answer.doc["code"] == 1306406 and answer.doc["result"] is False
        assert answer.doc["message"] == f"Parameters error, param {missing} is required"
        assert answer.doc["data"] is None


async def test_esb_path_variable_null_is_its_python_text() -> None:
    """``str.format`` writes None as ``None``: the CMDB is asked for that resource."""
    async for cmdb in _cmdb(auth=False):
        answer = await cmdb.esb("resource_watch", {"bk_resource": None})
        assert (answer.doc["code"], answer.doc["message"]) == (
            1199998,
            "unsupported cursor type None",
        )


# --- A3: gjson's Int() in the auth parse --------------------------------------------------


@pytest.mark.parametrize("text", ["1.5", " 5", "5 ", "+5", "1e2", "", "-", "0x5", "５"])
@pytest.mark.parametrize("side", ["bk_inst_id", "bk_asst_inst_id"])
async def test_auth_parse_reads_string_ids_like_gjson(text: str, side: str) -> None:
    """``Int()`` of a JSON string goes through gjson's parseInt, which takes only
    ``-?[0-9]+`` (gjson.go:118-141,2598-2619); anything else is 0, which the create parse
    refuses (src/ac/parser/topolatest.go:678-731): 1199045 ``invalid <side> value``."""
    async for cmdb in _cmdb():
        detail: dict[str, Any] = {"bk_inst_id": 2, "bk_asst_inst_id": 103}
        detail[side] = text
        body = {"bk_obj_id": "bk_switch", "bk_asst_obj_id": "host", "bk_obj_asst_id": CONNECT,
                "details": [detail]}  # fmt: skip
        answer = await cmdb.call("apigw", "batch_create_instance_association", body)
        want = {"result": False, "bk_error_code": 1199045,
                "bk_error_msg": f"invalid {side} value", "permission": None}  # fmt: skip
        assert answer.doc == want


def test_gjson_int() -> None:
    """parseInt wraps like int64; numbers within 2**53 are truncated (safeInt), larger
    ones parsed from their digits; true is 1 (gjson.go:118-141)."""
    assert _go_int("5") == 5 and _go_int("-3") == -3 and _go_int("007") == 7
    assert _go_int("99999999999999999999") == 99999999999999999999 - 2**64 * 5
    assert _go_int(5.9) == 5 and _go_int(True) == 1 and _go_int(False) == 0
    assert _go_int(2**63) == -(2**63) and _go_int(None) == 0 and _go_int([1]) == 0
    assert _go_int(2**64 + 5) == 5 and _go_int(1e300) == -(2**63)


# --- A4: Go's %+v of a bk_obj_id that is no string ----------------------------------------


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (["bk_switch"], "[bk_switch]"),
        ({"b": [True, None], "a": 1}, "map[a:1 b:[true <nil>]]"),
        (1000000, "1e+06"),
        (1.5, "1.5"),
        (None, "<nil>"),
    ],
)
async def test_delete_batch_prints_bk_obj_id_like_go(value: Any, printed: str) -> None:
    """``getOneModel(mapstr{bk_obj_id: gjson Value()})`` (src/ac/parser/topolatest.go:
    818-819) fails with ``model %+v not found`` (src/ac/parser/util.go:41-50): Go prints
    a []interface{} as ``[a b]``, a map as ``map[k:v]`` with sorted keys, a number
    (float64) in %g's shortest form."""
    assert _go_value(value) == printed
    async for cmdb in _cmdb():
        body = {"bk_obj_id": value, "id": [1]}
        answer = await cmdb.call("apigw", "delete_related_inst_asso", body)
        assert code_of(answer.doc) == 1199045
        assert _message(answer.doc) == f"model [map[bk_obj_id:{printed}]] not found"

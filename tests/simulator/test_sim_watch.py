"""resource_watch for inst_asst, and the skip cost of offset paging, against bk-cmdb v3.14.8.

Sources (TencentBlueKing/bk-cmdb at 111e7ac66a): src/common/watch/{cursor,watch}.go,
src/source_controller/cacheservice/event/watch/{watch,client}.go,
src/source_controller/cacheservice/service/cache.go, src/scene_server/event_server/
service/watch.go, src/ac/parser/event.go, resources/errors/*/event_server.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sim_client import APP, CONNECT, GATEWAYS, LANGS, Answer, Cmdb, fixture_doc

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from cmdb_simulator import cli as sim_cli
from cmdb_simulator.chain import NO_EVENT_CURSOR, EventChain, encode_cursor
from cmdb_simulator.envelope import code_of

INST_ASST = {"bk_resource": "inst_asst"}


@pytest.fixture
def options() -> SimulatorOptions:
    return SimulatorOptions(watch_timeout_s=0.2, watch_error_delay_s=0.0)


async def watch(
    c: Cmdb, gateway: str, body: dict[str, Any] | None = None, lang: str = "en", **params: str
) -> Answer:
    return await c.call(gateway, "resource_watch", body or {}, params or INST_ASST, lang=lang)


def message(doc: dict[str, Any]) -> str:
    return str(doc.get("message", doc.get("bk_error_msg")))


def data(answer: Answer) -> dict[str, Any]:
    assert answer.status == 200
    assert code_of(answer.doc) == 0, answer.doc
    result: dict[str, Any] = answer.doc["data"]
    return result


def decoded(cursor: str) -> list[str]:
    return base64.b64decode(cursor).decode().split("\r")


async def wait_until(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- cursors ------------------------------------------------------------------------------------


def test_cursor_encoding_is_bk_cmdbs() -> None:
    # src/common/watch/cursor_test.go:26-45: host cursor, sec 1588853652, nano 0, key "1".
    sample = "MQ0yDTVlYjM4NTk3NDc3MGExMThmNDkyMmFiZQ1pbnNlcnQNMTU4ODg1MzY1Mg0wDTE="
    assert encode_cursor("host", "5eb385974770a118f4922abe", "insert", 1588853652, 0, "1") == sample
    # cursor.go:43-56 (Encode always writes the separator before the empty unique key).
    assert decoded(NO_EVENT_CURSOR) == [
        "1",
        "1",
        "5ea6d3f394c1f5d986e9bd86",
        "noEvent",
        "1",
        "1",
        "",
    ]


# --- request validation -------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize(
    ("body", "params", "text"),
    [
        # WatchEventOptions.Validate (src/common/watch/watch.go:52-85), raw Go text as
        # 1199998 (rest/contexts.go:314-333): the same in every language.
        ({"bk_event_types": ["modify"]}, INST_ASST, "unsupported event type"),
        ({"bk_start_from": 5, "bk_cursor": NO_EVENT_CURSOR}, INST_ASST,
         "bk_start_from and bk_cursor can not use at the same time"),
        ({}, {"bk_resource": "host"}, "host event must have fields"),
        ({"bk_filter": {"bk_sub_resource": "host"}}, {"bk_resource": "process"},
         "process event cannot have sub resource"),
        # GetResourceKeyWithCursorType (cacheservice/event/util.go:53-61); with auth on
        # the auth filter refuses an unknown resource first (test_sim_conformance).
        ({}, {"bk_resource": "switches"}, "unsupported cursor type switches"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("lang", LANGS)
async def test_invalid_options_answer_1199998_with_go_text(
    cmdb: Cmdb,
    gateway: str,
    body: dict[str, Any],
    params: dict[str, str],
    text: str,
    lang: str,
) -> None:
    cmdb.sim.options.auth = False
    answer = await watch(cmdb, gateway, body, lang, **params)
    assert answer.status == 200
    assert code_of(answer.doc) == 1199998
    assert message(answer.doc) == text
    assert answer.doc["result"] is False


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_before_3_10_10_inst_asst_is_unknown(cmdb: Cmdb, gateway: str) -> None:
    # inst_asst watch arrived in v3.10.10 (commit 1a3d09a192); before it the resource
    # lookup refuses it (release-v3.10.9 event/util.go:49, watch/watch.go:64-66). That is
    # with auth off; with it on, the auth filter refuses first (test_sim_conformance).
    cmdb.sim.options.cmdb_version = "3.10.9"
    cmdb.sim.options.auth = False
    answer = await watch(cmdb, gateway)
    assert (code_of(answer.doc), message(answer.doc)) == (
        1199998,
        "unsupported cursor type inst_asst",
    )
    answer = await watch(cmdb, gateway, {"bk_filter": {"bk_sub_resource": "host"}})
    assert message(answer.doc) == "inst_asst event cannot have sub resource"
    cmdb.sim.options.cmdb_version = "3.10.10"
    assert data(await watch(cmdb, gateway))["bk_watched"] is False


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize(
    "body",
    [{"bk_fields": "id"}, {"bk_start_from": "yesterday"}, {"bk_start_from": 1.5},
     {"bk_cursor": 7}, {"bk_event_types": [1]}, {"bk_filter": ["host"]}],
)  # fmt: skip
@pytest.mark.parametrize(("lang", "text"), [("en", "Deserializing JSON data failed"),
                                            ("zh", "反序列化JSON数据失败")])  # fmt: skip
async def test_wrong_json_types_answer_1199000(
    cmdb: Cmdb, gateway: str, body: dict[str, Any], lang: str, text: str
) -> None:
    # The event server's DecodeInto into WatchEventOptions (event_server/service/watch.go:31-37).
    answer = await watch(cmdb, gateway, body, lang)
    assert (code_of(answer.doc), message(answer.doc)) == (1199000, text)


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize(
    ("lang", "text"),
    [("en", "'bk_start_from' data parameter verification does not pass"),
     ("zh", "'bk_start_from' 数据参数校验不通过")],
)  # fmt: skip
async def test_start_from_outside_the_window_is_1199006(
    cmdb: Cmdb, gateway: str, lang: str, text: str
) -> None:
    # watch.go:63-67: older than the key's TTL, or in the future.
    for start in (int(time.time()) - 7 * 3600, int(time.time()) + 3600):
        answer = await watch(cmdb, gateway, {"bk_start_from": start}, lang)
        assert (code_of(answer.doc), message(answer.doc)) == (1199006, text)


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_unknown_sub_resource_fails_the_auth_parse(cmdb: Cmdb, gateway: str) -> None:
    # src/ac/parser/event.go:86-96: getOneModel on bk_filter.bk_sub_resource, 1199045.
    answer = await watch(cmdb, gateway, {"bk_filter": {"bk_sub_resource": "router"}})
    assert code_of(answer.doc) == 1199045
    assert message(answer.doc) == "model [map[bk_obj_id:router]] not found"
    if gateway == "apigw":
        assert "data" not in answer.doc  # the API server's filter writes a bare BaseResp
    cmdb.sim.options.auth = False
    answer = await watch(cmdb, gateway, {"bk_filter": {"bk_sub_resource": "router"}})
    assert data(answer)["bk_watched"] is False


@pytest.fixture
async def denied() -> AsyncIterator[Cmdb]:
    doc = fixture_doc()
    doc["apps"] = [APP | {"deny": [{"api": "resource_watch", "bk_obj_id": "bk_switch"}]}]
    sim = Simulator(Fixture.from_dict(doc), SimulatorOptions(watch_timeout_s=0.1))
    async with sim.running(host="127.0.0.1", port=0) as url, aiohttp.ClientSession() as session:
        yield Cmdb(sim, url, session)


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_iam_decides_watch_in_the_api_server(denied: Cmdb, gateway: str) -> None:
    # event.go:71-96: EventWatch/inst_asst, the sub resource's model as the instance;
    # IAM action watch_inst_asst_event on inst_asst_event (src/ac/iam/gen_id.go:250-258).
    answer = await watch(denied, gateway, {"bk_filter": {"bk_sub_resource": "bk_switch"}})
    assert code_of(answer.doc) == 9900403
    action = answer.doc["permission"]["actions"][0]
    assert (action["id"], action["name"]) == ("watch_inst_asst_event", "实例关联事件监听")
    related = action["related_resource_types"][0]
    assert (related["type"], related["type_name"]) == ("inst_asst_event", "实例关联事件")
    assert related["instances"][0][0]["name"] == "bk_switch"
    # Without the sub resource the rule does not match: the watch is served.
    assert data(await watch(denied, gateway))["bk_watched"] is False


# --- answers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_nothing_happened_is_unwatched_with_a_cursor(cmdb: Cmdb, gateway: str) -> None:
    # The fixture's pairs are no events. WatchFromNow on an empty chain (watch.go:520-528)
    # and the answer (cache.go:652-673): bk_watched false, NoEventCursor, no detail.
    nothing = data(await watch(cmdb, gateway))
    assert nothing == {
        "bk_watched": False,
        "bk_events": [
            {"bk_cursor": NO_EVENT_CURSOR, "bk_resource": "inst_asst", "bk_event_type": "",
             "bk_detail": None},
        ],
    }  # fmt: skip
    # With that cursor the request is held (watch.go:604-630), then answered the same way.
    held = data(await watch(cmdb, gateway, {"bk_cursor": NO_EVENT_CURSOR}))
    assert held == nothing


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_creates_and_deletes_by_any_caller_come_in_order(cmdb: Cmdb, gateway: str) -> None:
    sim = cmdb.sim
    assert code_of((await cmdb.batch("esb", [(2, 103), (3, 104)])).doc) == 0
    single = {"bk_obj_asst_id": CONNECT, "bk_inst_id": 4, "bk_asst_inst_id": 105}
    assert code_of((await cmdb.call("apigw", "add_instance_association", single)).doc) == 0
    rows = {(r["bk_inst_id"], r["bk_asst_inst_id"]): r for r in sim.associations(CONNECT)}
    first_row = dict(rows[(2, 103)])
    delete = {"bk_obj_id": "bk_switch", "id": [first_row["id"]]}
    assert code_of((await cmdb.call("esb", "delete_related_inst_asso", delete)).doc) == 0
    assert sim.delete_pairs(CONNECT, [(1, 101)]) == 1  # a fixture pair, deleted behind the API

    got = data(await watch(cmdb, gateway, {"bk_cursor": NO_EVENT_CURSOR}))
    assert got["bk_watched"] is True
    events = got["bk_events"]
    kinds = [(e["bk_event_type"], e["bk_detail"]["bk_inst_id"]) for e in events]
    # A batch-created pair comes twice (two inserts without a transaction,
    # core/instance.go:149-172); the single create and the deletes once each.
    assert kinds == [
        ("create", 2), ("create", 2), ("create", 3), ("create", 3), ("create", 4),
        ("delete", 2), ("delete", 1),
    ]  # fmt: skip
    # The detail is the association document (parser.go:186: the inserted or archived doc).
    # A create's carries the insert's own ``_id`` and ``bk_biz_id`` 0; a delete's has no
    # ``_id`` (audit W2, tested in test_sim_conformance_low.py).
    stored = first_row | {"bk_biz_id": 0}
    for event in events[0:2]:
        assert {k: v for k, v in event["bk_detail"].items() if k != "_id"} == stored
    assert events[5]["bk_detail"] == stored
    keys = {"id", "bk_obj_asst_id", "bk_obj_id", "bk_asst_obj_id", "bk_inst_id", "bk_asst_inst_id"}
    assert set(events[0]["bk_detail"]) >= keys
    # Cursors: type 13, the association id as oid and unique key, the operation
    # (cursor.go:191-244, parser.go:142-146), cluster times in order.
    parts = [decoded(e["bk_cursor"]) for e in events]
    assert [(p[0], p[1], p[3]) for p in parts][4:6] == [
        ("1", "13", "insert"),
        ("1", "13", "delete"),
    ]
    assert all(
        p[2] == p[6] == str(e["bk_detail"]["id"]) for p, e in zip(parts, events, strict=True)
    )
    times = [(int(p[4]), int(p[5])) for p in parts]
    assert times == sorted(times) and len(set(times)) == len(times)
    # From now (no cursor): the newest event, as an event (watch.go:508-573).
    latest = data(await watch(cmdb, gateway))
    assert latest == {"bk_watched": True, "bk_events": [events[-1]]}
    # After the last cursor nothing: held, then that cursor again (watch.go:645-651).
    after = data(await watch(cmdb, gateway, {"bk_cursor": events[-1]["bk_cursor"]}))
    assert after["bk_watched"] is False
    assert after["bk_events"][0]["bk_cursor"] == events[-1]["bk_cursor"]
    assert sim.stats()["watch_events_total"] == 7


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_fields_types_and_sub_resource_narrow_the_events(cmdb: Cmdb, gateway: str) -> None:
    await cmdb.batch("esb", [(2, 103)])
    cmdb.sim.delete_pairs(CONNECT, [(2, 103)])
    # CutJsonDataWithFields (src/common/json/tool.go:29-55): asked order, null if absent.
    body = {"bk_cursor": NO_EVENT_CURSOR, "bk_fields": ["bk_asst_inst_id", "id", "nope"],
            "bk_event_types": ["delete"], "bk_filter": {"bk_sub_resource": "host"}}  # fmt: skip
    got = data(await watch(cmdb, gateway, body))
    assert [e["bk_event_type"] for e in got["bk_events"]] == ["delete"]
    assert list(got["bk_events"][0]["bk_detail"].items()) == [
        ("bk_asst_inst_id", 103), ("id", 2), ("nope", None)
    ]  # fmt: skip
    # A model with no inst_asst events (biz): held, then the newest cursor with no detail
    # (watch.go:631-651, cache.go:674-677).
    other = data(await watch(cmdb, gateway, {"bk_cursor": NO_EVENT_CURSOR,
                                             "bk_filter": {"bk_sub_resource": "biz"}}))  # fmt: skip
    assert other["bk_watched"] is False
    assert decoded(other["bk_events"][0]["bk_cursor"])[3] == "delete"
    assert other["bk_events"][0]["bk_detail"] is None


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_at_most_200_per_answer_then_continue(cmdb: Cmdb, gateway: str) -> None:
    # 125 batch-created pairs: 250 events (two each).
    await cmdb.batch("esb", [(2, h) for h in range(101, 201)])
    await cmdb.batch("apigw", [(3, h) for h in range(103, 128)])
    first = data(await watch(cmdb, gateway, {"bk_start_from": int(time.time()) - 60}))
    # bk_start_from: the first node after the time plus eventStep (200) following it
    # (watch.go:133-188).
    assert len(first["bk_events"]) == 201
    one = data(await watch(cmdb, gateway))["bk_events"][0]  # the newest
    start = first["bk_events"][0]["bk_cursor"]
    page = data(await watch(cmdb, gateway, {"bk_cursor": start}))["bk_events"]
    assert len(page) == 200  # eventStep (watch.go:53-54)
    rest = data(await watch(cmdb, gateway, {"bk_cursor": page[-1]["bk_cursor"]}))["bk_events"]
    assert len(rest) == 49
    assert rest[-1] == one
    ids = [e["bk_detail"]["id"] for e in [first["bk_events"][0], *page, *rest]]
    assert ids == sorted(ids) and len(ids) == 250 and len(set(ids)) == 125


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_long_poll_returns_when_an_event_arrives(cmdb: Cmdb, gateway: str) -> None:
    cmdb.sim.options.watch_timeout_s = 30.0
    task = asyncio.create_task(watch(cmdb, gateway, {"bk_cursor": NO_EVENT_CURSOR}))
    await wait_until(lambda: cmdb.sim.stats()["in_flight"] == 1)
    assert not task.done()
    cmdb.sim.delete_pairs(CONNECT, [(1, 101)])
    got = data(await asyncio.wait_for(task, 10.0))
    assert got["bk_watched"] is True
    assert [(e["bk_event_type"], e["bk_detail"]["bk_asst_inst_id"]) for e in got["bk_events"]] == [
        ("delete", 101)
    ]
    # Events that do not match keep it waiting (the loop goes on, watch.go:604-661).
    cursor = got["bk_events"][0]["bk_cursor"]
    task = asyncio.create_task(watch(cmdb, gateway, {"bk_cursor": cursor,
                                                     "bk_event_types": ["delete"]}))  # fmt: skip
    await wait_until(lambda: cmdb.sim.stats()["in_flight"] == 1)
    await cmdb.batch("esb", [(5, 150)])
    await asyncio.sleep(0.05)
    assert not task.done()
    cmdb.sim.delete_pairs(CONNECT, [(5, 150)])
    got = data(await asyncio.wait_for(task, 10.0))
    assert [e["bk_event_type"] for e in got["bk_events"]] == ["delete"]


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize(("lang", "text"), [("en", "Event chain node not exist"),
                                            ("zh", "事件节点不存在")])  # fmt: skip
async def test_expired_or_unknown_cursor_is_1103007(
    cmdb: Cmdb, gateway: str, lang: str, text: str
) -> None:
    await cmdb.batch("esb", [(2, 103), (2, 104)])
    events = data(await watch(cmdb, gateway, {"bk_cursor": NO_EVENT_CURSOR}))["bk_events"]
    old, newest = events[0]["bk_cursor"], events[-1]["bk_cursor"]
    assert data(await watch(cmdb, gateway, {"bk_cursor": old}))["bk_watched"] is True
    cmdb.sim.options.watch_retention_s = 0.001  # everything recorded so far has expired
    await asyncio.sleep(0.01)
    # searchFollowingEventChainNodes finds no retained node (client.go:334-362), then
    # WatchWithCursor answers CCErrEventChainNodeNotExist (watch.go:600-602).
    for cursor in (old, "not-a-cursor", encode_cursor("inst_asst", "9", "insert", 5, 1, "9")):
        answer = await watch(cmdb, gateway, {"bk_cursor": cursor}, lang)
        assert (code_of(answer.doc), message(answer.doc)) == (1103007, text)
        assert answer.doc["result"] is False
    # The newest node's cursor stays valid through the watch token (client.go:349-369);
    # with nothing retained the hold ends with NoEventCursor (watch.go:621-630).
    held = data(await watch(cmdb, gateway, {"bk_cursor": newest}))
    assert held["bk_events"][0]["bk_cursor"] == NO_EVENT_CURSOR
    assert cmdb.sim.stats()["watch_events_retained"] == 0


# --- offset paging cost -------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_skip_cost_grows_with_the_offset(cmdb: Cmdb, gateway: str) -> None:
    cmdb.sim.options.skip_cost_us = 50.0
    await cmdb.batch("esb", [(2, h) for h in range(101, 301)])
    await cmdb.batch("esb", [(3, h) for h in range(103, 203)])
    costs = []
    for start in (0, 100, 200):
        before = cmdb.sim.stats()["skip_cost_s"]
        body = {"page": {"start": start, "limit": 100, "sort": "id"}}
        answer = await cmdb.call(gateway, "search_instance_associations", body,
                                 {"bk_obj_id": "bk_switch"})  # fmt: skip
        assert len(data(answer)["info"]) == 100
        costs.append(cmdb.sim.stats()["skip_cost_s"] - before)
    assert costs[0] == 0
    assert costs[1] == pytest.approx(100 * 50e-6)
    assert costs[2] == pytest.approx(2 * costs[1])
    assert cmdb.sim.stats()["rows_skipped"] == 300
    # A start past the end walks only the rows there are.
    past = {"page": {"start": 10_000, "limit": 10}}
    await cmdb.call(gateway, "search_instance_associations", past, {"bk_obj_id": "bk_switch"})
    assert cmdb.sim.stats()["rows_skipped"] == 300 + 301


def test_cli_flags() -> None:
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    args = parser.parse_args(["--fixture", "f"])
    assert (args.watch_timeout, args.watch_retention, args.skip_cost_us) == (20.0, 21600, 0.0)
    args = parser.parse_args(["--fixture", "f", "--watch-timeout", "0.5",
                              "--watch-retention", "60", "--skip-cost-us", "2"])  # fmt: skip
    assert (args.watch_timeout, args.watch_retention, args.skip_cost_us) == (0.5, 60.0, 2.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["--fixture", "f", "--watch-retention", "0"])


# --- the event chain itself ---------------------------------------------------------------------


def test_chain_expires_compacts_and_keeps_the_newest_cursor() -> None:
    now = [1_000.0]
    chain = EventChain(lambda: 60.0, lambda: now[0])
    rows = [{"id": i, "bk_obj_id": "bk_switch", "bk_asst_obj_id": "host"} for i in range(1, 3001)]
    for row in rows[:2500]:
        chain.record(("create", row))
    chain.flush()
    now[0] = 999.0  # a clock step back: cluster times still grow
    for row in rows[2500:]:
        chain.record(("delete", row))
    stamps = [(n.sec, n.nano) for n in chain.following(0, (), "", limit=5000)]
    assert len(stamps) == 3000 and stamps == sorted(set(stamps))
    old = chain.following(0, (), "", limit=1)[0].cursor
    newest = chain.latest()
    assert newest is not None and newest.id == 3000
    found = chain.find(old)
    assert found is not None and found.id == 1
    now[0] = 1_100.0  # all 3000 are past the 60 s window
    chain.record(("create", {"id": 9999, "bk_obj_id": "bk_switch", "bk_asst_obj_id": "host"}))
    assert chain.retained() == 1
    assert chain.find(old) is None
    assert chain.total == 3001
    assert [n.id for n in chain.following(1, (), "")] == [3001]
    assert chain.following(5000, (), "") == []
    now[0] = 1_200.0
    assert chain.retained() == 0 and chain.latest() is None and chain.earliest() is None
    last = chain.last
    assert last is not None and last.id == 3001
    assert chain.find(last.cursor) == last  # the watch token's cursor outlives retention
    assert chain.find(newest.cursor) is None

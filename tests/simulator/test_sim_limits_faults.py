"""Rate and concurrency refusals, injected faults, latency and the /_sim counters."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from sim_client import CONNECT, GATEWAYS, Cmdb, fixture_doc

from cmdb_simulator import Fixture, Simulator, SimulatorOptions

COUNT_PATH = "/api/v3/count/instance_associations/object/bk_switch"


@pytest.mark.parametrize("options", [SimulatorOptions(rate_limit=5)])
async def test_rate_limit_apigw(cmdb: Cmdb) -> None:
    began = time.monotonic()
    answers = [await cmdb.gw("POST", COUNT_PATH, {})]
    opened_by = time.monotonic()  # the window opened when the first request arrived
    answers += [await cmdb.gw("POST", COUNT_PATH, {}) for _ in range(7)]
    statuses = [a.status for a in answers]
    # The first request opens a 1 s window of 5; the rest of it is refused.
    assert statuses[:5] == [200] * 5
    assert statuses.count(429) >= 2
    assert [a.headers["X-Bkapi-RateLimit-Remaining"] for a in answers[:5]] == [
        "4",
        "3",
        "2",
        "1",
        "0",
    ]
    assert all(a.headers["X-Bkapi-RateLimit-Limit"] == "5" for a in answers)
    refused = next(a for a in answers if a.status == 429)
    assert refused.doc == {
        "result": False,
        "code": 1642903,
        "code_name": "RATE_LIMIT_RESTRICTION",
        "message": "API rate limit exceeded by resource strategy",
        "data": None,
    }
    assert refused.headers["X-Bkapi-Error-Code"] == "1642903"
    assert int(refused.headers["X-Bkapi-RateLimit-Reset"]) >= 1
    assert "Retry-After" not in refused.headers
    await asyncio.sleep(0.25)  # a token bucket at 5/s would have a token again
    late = await cmdb.gw("POST", COUNT_PATH, {})
    if time.monotonic() - began < 0.95:  # still in the first window (a slow machine may not be)
        assert late.status == 429
    # Past the first window's end however late its first request arrived (a loaded
    # machine can take longer than the margin between `began` and that arrival).
    await asyncio.sleep(max(0.0, opened_by + 1.05 - time.monotonic()))
    assert (await cmdb.gw("POST", COUNT_PATH, {})).status == 200  # a new window
    stats = cmdb.sim.stats()
    refused = statuses.count(429) + (late.status == 429)
    assert stats["requests_by_status"] == {"200": 10 - refused, "429": refused}
    assert stats["peak_rps"] >= 9


@pytest.mark.parametrize("options", [SimulatorOptions(rate_limit=3)])
async def test_rate_limit_esb(cmdb: Cmdb) -> None:
    answers = [
        await cmdb.esb("count_instance_associations", {"bk_obj_id": "bk_switch"}) for _ in range(5)
    ]
    codes = [a.doc["code"] for a in answers]
    assert codes[:3] == [0, 0, 0] and 1306429 in codes
    assert all(a.status == 200 for a in answers)
    assert (
        answers[-1]
        .doc["message"]
        .startswith("Access frequency limit, Access frequency of APP [syncd]")
    )
    assert answers[-1].doc["data"] is None and answers[-1].doc["request_id"]


@pytest.mark.parametrize("options", [SimulatorOptions(max_in_flight=2, latency_ms=300)])
@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_concurrency_cap(cmdb: Cmdb, gateway: str) -> None:
    answers = await asyncio.gather(*(cmdb.batch(gateway, [(2, 110 + i)]) for i in range(4)))
    codes = sorted(a.doc["code"] for a in answers)
    if gateway == "apigw":
        assert codes == [0, 0, 1642904, 1642904]
        refused = next(a for a in answers if a.doc["code"])
        assert refused.status == 429
        assert refused.doc["code_name"] == "CONCURRENCY_LIMIT_RESTRICTION"
        # Per gateway, stage and app (bk-concurrency-limit.lua:44-58,83-89).
        assert refused.doc["message"] == 'Request concurrency exceeds [key="bk-cmdb:prod:syncd"]'
        assert len(cmdb.sim.pairs(CONNECT)) == 3
    else:
        # No ESB (current or legacy) has a concurrency limiter: all four are served.
        assert codes == [0, 0, 0, 0]
        assert len(cmdb.sim.pairs(CONNECT)) == 5
    stats = cmdb.sim.stats()
    assert stats["peak_in_flight"] >= 3  # refused requests count while open too
    assert stats["in_flight"] == 0


def fault_options(kind: str) -> SimulatorOptions:
    return SimulatorOptions(fault_rate=1.0, fault_kinds=(kind,))


@pytest.mark.parametrize(
    ("options", "status", "code", "created"),
    [
        pytest.param(fault_options("502"), 502, 1650200, False, id="502"),
        pytest.param(fault_options("504"), 504, 1650401, False, id="504"),
        pytest.param(fault_options("504-after"), 504, 1650401, True, id="504-after"),
    ],
)
async def test_gateway_faults_apigw(cmdb: Cmdb, status: int, code: int, created: bool) -> None:
    answer = await cmdb.batch("apigw", [(2, 110)])
    assert answer.status == status
    assert answer.doc["code"] == code and answer.doc["result"] is False
    assert answer.headers["X-Bkapi-Error-Code"] == str(code)
    assert ((2, 110) in cmdb.sim.pairs(CONNECT)) is created
    # Retrying is safe: an acted-on pair now comes back as "already exists".
    cmdb.sim.options.fault_rate = 0
    retry = await cmdb.batch("apigw", [(2, 110)])
    data = retry.doc["data"]
    assert (data["error_msg"] == {"0": "the associations bk_switch->host already exist"}) is created


@pytest.mark.parametrize(
    ("options", "created"),
    [
        pytest.param(fault_options("502"), False, id="502"),
        pytest.param(fault_options("504"), False, id="504"),
        pytest.param(fault_options("504-after"), True, id="504-after"),
    ],
)
async def test_gateway_faults_esb(cmdb: Cmdb, created: bool) -> None:
    answer = await cmdb.batch("esb", [(2, 110)])
    assert answer.status == 200 and answer.doc["result"] is False
    if cmdb.sim.options.fault_kinds == ("502",):
        # allow_non_200=True: the proxy's HTML page fails json.loads (cc/toolkit/tools.py:93-100).
        assert answer.doc["code"] == 1306000
        assert answer.doc["message"].startswith(
            "Request interface error, the response content is not a json string: <html>"
        )
        assert set(answer.doc) == {"result", "code", "message", "request_id"}
    else:
        # ReadTimeout after REQUEST_TIMEOUT_SECS = 30 (esb/outgoing.py:202-205).
        assert answer.doc["code"] == 1306201
        assert answer.doc["message"] == (
            "Component request third-party system [CC] interface "
            "[batch_create_instance_association] error: Third-party system interface response "
            "time exceeds 30 seconds, please try again later or contact component developer "
            "to handle this"
        )
    assert ((2, 110) in cmdb.sim.pairs(CONNECT)) is created


@pytest.mark.parametrize("options", [fault_options("drop")])
@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_drop_after_acting(cmdb: Cmdb, gateway: str) -> None:
    with pytest.raises(aiohttp.ClientError):
        await cmdb.batch(gateway, [(2, 110)])
    assert (2, 110) in cmdb.sim.pairs(CONNECT)
    stats = await cmdb.raw("GET", "/_sim/stats")  # /_sim/* never gets faults
    assert stats.status == 200
    assert stats.doc["requests_by_status"] == {"drop": 1}
    assert stats.doc["faults"] == {"drop": 1}


async def outcome_pattern(seed: int) -> list[int]:
    options = SimulatorOptions(fault_rate=0.5, fault_kinds=("502", "504"), seed=seed)
    sim = Simulator(Fixture.from_dict(fixture_doc()), options)
    async with sim.running() as url, aiohttp.ClientSession() as session:
        client = Cmdb(sim, url, session)
        return [(await client.gw("POST", COUNT_PATH, {})).status for _ in range(30)]


async def test_faults_are_seeded_and_repeatable() -> None:
    first, again, other = (
        await outcome_pattern(7),
        await outcome_pattern(7),
        await outcome_pattern(8),
    )
    assert first == again
    assert first != other
    assert set(first) == {200, 502, 504}


@pytest.mark.parametrize("options", [SimulatorOptions(latency_ms=150)])
async def test_base_latency(cmdb: Cmdb) -> None:
    start = time.perf_counter()
    await cmdb.gw("POST", COUNT_PATH, {})
    assert time.perf_counter() - start >= 0.15


@pytest.mark.parametrize("options", [SimulatorOptions(per_detail_ms=2)])
async def test_per_detail_latency(cmdb: Cmdb) -> None:
    start = time.perf_counter()
    await cmdb.batch("esb", [(2, 110 + i) for i in range(100)])
    assert time.perf_counter() - start >= 0.19
    start = time.perf_counter()
    await cmdb.batch("esb", [(3, 110)])
    assert time.perf_counter() - start < 0.5


async def test_stats_and_reset(cmdb: Cmdb) -> None:
    await cmdb.batch("esb", [(2, 110), (2, 111), (2, 112)])
    await cmdb.batch("apigw", [(3, 110)])
    await cmdb.gw("POST", "/api/v3/unknown", {})
    stats = (await cmdb.raw("GET", "/_sim/stats")).doc
    assert stats["requests"] == 3
    assert stats["requests_by_api"] == {"batch_create_instance_association": 2, "unknown": 1}
    assert stats["requests_by_status"] == {"200": 2, "404": 1}
    assert stats["requests_by_api_status"]["unknown"] == {"404": 1}
    assert stats["details_received"] == 4
    assert stats["max_batch"] == 3
    assert stats["pairs_created"] == 4
    assert stats["peak_in_flight"] == 1
    assert stats["peak_rps"] == 3
    assert stats == cmdb.sim.stats() | {"uptime_s": stats["uptime_s"]}
    reset = await cmdb.raw("POST", "/_sim/reset")
    assert reset.doc == {"result": True}
    after = cmdb.sim.stats()
    assert (after["requests"], after["max_batch"], after["peak_rps"]) == (0, 0, 0)
    assert after["associations"] == 5  # counters reset, data kept


async def test_options_endpoint(cmdb: Cmdb) -> None:
    changed = await cmdb.raw(
        "POST", "/_sim/options", json={"fault_rate": 1.0, "fault_kinds": ["502"]}
    )
    assert changed.doc["fault_rate"] == 1.0
    assert (await cmdb.gw("POST", COUNT_PATH, {})).status == 502
    bad = await cmdb.raw("POST", "/_sim/options", json={"fault_kinds": ["boom"]})
    assert bad.status == 400 and "boom" in bad.doc["message"]
    await cmdb.raw("POST", "/_sim/options", json={"fault_rate": 0})
    assert (await cmdb.gw("POST", COUNT_PATH, {})).status == 200


def test_option_validation() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        SimulatorOptions(fault_kinds=("503",))
    with pytest.raises(ValueError, match="fault_rate"):
        SimulatorOptions(fault_rate=1.5)

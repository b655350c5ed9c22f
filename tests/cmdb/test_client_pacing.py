"""The client's pacing as the CMDB sees it: real HTTP over loopback, counted server-side."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from pydantic import SecretStr

from cmdb_simulator import Simulator
from syncd.cmdb.client import CmdbClient
from syncd.config.settings import CmdbSettings
from syncd.core.answer import Verdict
from tests.helpers import ASST


def settings(url: str, gateway: str, rate: float, concurrency: int) -> CmdbSettings:
    return CmdbSettings(
        url=url,
        gateway=gateway,
        app_code="syncd",
        app_secret=SecretStr("s3cret-app"),
        rate_limit=rate,
        concurrency=concurrency,
        max_retries=0,
        timeout=10,
    )


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_server_side_peak_stays_within_ten_percent_of_the_rate(
    sim_factory: Callable[..., Simulator], gateway: str
) -> None:
    rate, workers, each = 50.0, 32, 5  # 160 requests: ~3 s, 32 always waiting for a slot
    sim = sim_factory()
    async with sim.running(host="127.0.0.1", port=0) as url:
        async with CmdbClient(settings(url, gateway, rate, workers)) as client:

            async def worker() -> list[Verdict]:
                verdicts = []
                for _ in range(each):
                    found = await client.find_object_association(ASST)
                    verdicts.append(Verdict.OK if found else Verdict.FAILED)
                return verdicts

            results = await asyncio.gather(*(worker() for _ in range(workers)))
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_sim/stats") as resp:
            stats = await resp.json()
    assert all(v is Verdict.OK for run in results for v in run)
    assert stats["requests"] == workers * each
    assert stats["peak_in_flight"] >= 1
    # The old sliding window let ~rate requests out together and the server saw up to
    # 1.17 x rate in one second; evenly paced, it sees the rate plus transport jitter.
    assert stats["peak_rps"] <= 1.1 * rate, stats["peak_rps"]


async def test_reads_and_writes_have_their_own_budget_only_on_the_api_gateway(
    sim_factory: Callable[..., Simulator],
) -> None:
    sim = sim_factory()
    async with sim.running(host="127.0.0.1", port=0) as url:
        gw = settings(url, "apigw", 40, 4).model_copy(update={"read_rate_limit": 120.0})
        async with CmdbClient(gw) as client:
            assert client.budgets.read.rate == 120 and client.limiter.rate == 40
            await client.find_object_association(ASST)
            answer = await client.batch_create("bk_switch", "host", ASST, [(1, 1001)])
            assert answer.verdict is Verdict.OK
            assert client.budgets.read.sent == 1 and client.budgets.write.sent == 1
        esb = settings(url, "esb", 40, 4).model_copy(update={"read_rate_limit": 120.0})
        async with CmdbClient(esb) as client:
            assert client.budgets.shared and client.budgets.read.rate == 40
            await client.find_object_association(ASST)
            await client.batch_create("bk_switch", "host", ASST, [(1, 1002)])
            assert client.limiter.sent == 2

"""The host pre-check and the isolation controller over real HTTP against the simulator."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from cmdb_simulator import Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.config.settings import CmdbSettings
from syncd.core.answer import Answer
from syncd.core.details import IndexKind
from syncd.core.isolate import Detail, IsolationBudget, Settled, settle_batch
from syncd.core.refusal import looked_up_sides
from tests.helpers import ASST


def settings(url: str, gateway: str = "esb") -> CmdbSettings:
    return CmdbSettings(
        url=url, gateway=gateway, app_code="syncd", app_secret="s3cret-app", retry_base=0.01
    )


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_existing_hosts_in_bulk(sim_factory: Callable[..., Simulator], gateway: str) -> None:
    simulator = sim_factory(hosts=1500)  # hosts 1001..2500
    async with (
        simulator.running(host="127.0.0.1", port=0) as url,
        CmdbClient(settings(url, gateway)) as client,
    ):
        asked = [*range(1, 40), *range(1001, 2501, 2), 2501, 99999, 1001]
        assert len(set(asked)) == 791
        found = await client.existing_hosts(asked, page_size=400)
        assert found == set(range(1001, 2501, 2))
        assert (
            simulator.stats()["requests_by_api"]["list_hosts_without_biz"] == 2
        )  # 791 ids, 400 a request
        assert await client.existing_hosts([]) == set()
        assert simulator.stats()["requests_by_api"]["list_hosts_without_biz"] == 2


async def test_existing_hosts_asks_1000_a_page(
    sim_factory: Callable[..., Simulator],
) -> None:
    """bk-cmdb's list_hosts_without_biz takes page.limit up to 1000 (BasePage.Validate,
    metadata/hostserver.go): 1200 ids cost two requests and no refusal."""
    simulator = sim_factory(hosts=1200)
    async with (
        simulator.running(host="127.0.0.1", port=0) as url,
        CmdbClient(settings(url)) as client,
    ):
        found = await client.existing_hosts(range(1001, 2201))
        assert found == set(range(1001, 2201))
        assert simulator.stats()["requests_by_api"]["list_hosts_without_biz"] == 2
        assert "1199006" not in simulator.stats()["requests_by_code"]


async def test_isolation_over_http_with_auth_off_costs_no_extra_request(
    sim_factory: Callable[..., Simulator],
) -> None:
    """Auth off: missing instances are answered per index, no extra request."""
    simulator = sim_factory(SimulatorOptions(auth=False), switches=20, hosts=200)
    async with (
        simulator.running(host="127.0.0.1", port=0) as url,
        CmdbClient(settings(url)) as client,
    ):
        sent: list[int] = []

        async def send(details: Sequence[Detail]) -> Answer:
            sent.append(len(details))
            return await client.batch_create("bk_switch", "host", ASST, list(details))

        details = [(s, 1000 + s) for s in range(1, 21)] + [(99, 1001), (1, 9999)]
        iso = await settle_batch(
            details,
            send,
            looked_up=looked_up_sides("bk_switch", "host"),
            budget=IsolationBudget(10),
        )
        assert sent == [22] and iso.extra_requests == 0
        kinds = [o.kind for o in iso.outcomes]
        assert kinds[:20] == [IndexKind.CREATED] * 20
        assert kinds[20:] == [IndexKind.MISSING_SOURCE, IndexKind.MISSING_TARGET]
        assert {o.settled for o in iso.outcomes} == {Settled.ANSWERED}
        assert all(o.exchange is iso.exchanges[0] for o in iso.outcomes)
        assert iso.exchanges[0].answer.request_id


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_isolation_over_http_with_auth_on_names_the_stale_host(
    sim_factory: Callable[..., Simulator], gateway: str
) -> None:
    """Auth on (bk-cmdb's default): a missing host refuses the whole request with 1199045
    `host N has no relations`; the details naming it fail and the rest is resent once."""
    simulator = sim_factory(SimulatorOptions(auth=True), switches=20, hosts=200)
    async with (
        simulator.running(host="127.0.0.1", port=0) as url,
        CmdbClient(settings(url, gateway)) as client,
    ):
        sent: list[int] = []

        async def send(details: Sequence[Detail]) -> Answer:
            sent.append(len(details))
            return await client.batch_create("bk_switch", "host", ASST, list(details))

        details = [(s, 1000 + s) for s in range(1, 21)] + [(3, 9999), (99, 1001)]
        iso = await settle_batch(
            details,
            send,
            looked_up=looked_up_sides("bk_switch", "host"),
            budget=IsolationBudget(10),
        )
        assert sent == [22, 21] and iso.extra_requests == 1
        kinds = [o.kind for o in iso.outcomes]
        assert kinds[:20] == [IndexKind.CREATED] * 20
        assert kinds[20:] == [IndexKind.MISSING_TARGET, IndexKind.MISSING_SOURCE]
        assert simulator.stats()["requests_by_code"].get("1199045") == 1

"""The ops server over real HTTP on loopback, with Health and Metrics behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.runtime.health import Health
from syncd.runtime.metrics import Metrics
from syncd.runtime.ops import OpsServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Ops:
    url: str
    health: Health
    metrics: Metrics
    clock: FakeClock
    resyncs: list[int]
    http: aiohttp.ClientSession


@pytest.fixture
async def ops() -> AsyncIterator[Ops]:
    clock = FakeClock()
    health = Health(max_age=100, stale_after=10, clock=clock)
    metrics = Metrics()
    resyncs: list[int] = []
    server = OpsServer(health, metrics, lambda: resyncs.append(1), port=0)
    url = await server.start()
    async with aiohttp.ClientSession() as http:
        yield Ops(url, health, metrics, clock, resyncs, http)
    await server.stop()


async def get(ops: Ops, path: str) -> tuple[int, dict[str, object]]:
    async with ops.http.get(ops.url + path) as resp:
        return resp.status, await resp.json()


async def test_start_picks_a_free_loopback_port(ops: Ops) -> None:
    assert ops.url.startswith("http://127.0.0.1:")
    assert not ops.url.endswith(":0")


async def test_healthz_follows_the_heartbeat(ops: Ops) -> None:
    status, body = await get(ops, "/healthz")
    assert (status, body["ok"], body["reason"]) == (200, True, "starting")
    ops.health.beat()
    ops.clock.now += 5
    status, body = await get(ops, "/healthz")
    assert (status, body["reason"]) == (200, "event loop running")
    ops.clock.now += 20
    status, body = await get(ops, "/healthz")
    assert status == 503
    assert "heartbeat" in str(body["reason"])


async def test_readyz_follows_the_last_cycle(ops: Ops) -> None:
    status, body = await get(ops, "/readyz")
    assert (status, body["reason"]) == (503, "no cycle finished yet")

    ops.health.cycle_finished(True, {"desired": 3, "known": 3, "relations_failed": 0})
    status, body = await get(ops, "/readyz")
    assert status == 200
    assert body["ok"] is True
    assert body["last_cycle"] == {"desired": 3, "known": 3, "relations_failed": 0}

    ops.clock.now += 101
    status, body = await get(ops, "/readyz")
    assert status == 503
    assert "ago" in str(body["reason"])

    ops.health.cycle_finished(False, {"relations_failed": 2})
    status, body = await get(ops, "/readyz")
    assert (status, body["reason"]) == (503, "last cycle failed for 2 relation(s)")


async def test_metrics_follow_the_scrapers_accept_header(ops: Ops) -> None:
    """Prometheus asks for OpenMetrics first; curl and older scrapers get the text format."""
    ops.metrics.record_pair("switch-host", "created", 2)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with ops.http.get(ops.url + "/metrics", headers={"Accept": accept}) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        open_metrics = await resp.text()
    assert open_metrics.rstrip().endswith("# EOF")
    assert 'syncd_pairs_total{outcome="created",relation="switch-host"} 2.0' in open_metrics
    async with ops.http.get(ops.url + "/metrics", headers={"Accept": "text/plain"}) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "# EOF" not in await resp.text()


async def test_metrics_exposition(ops: Ops) -> None:
    m = ops.metrics
    m.record_pair("switch-host", "created", 5)
    m.record_pair("switch-host", "missing_target")
    m.record_request("batch_create_instance_association", 200, 0.12)
    m.record_request("batch_create_instance_association", 429, 0.01)
    m.record_retry("batch_create_instance_association", "rate_limited")
    m.record_rate_limit_wait(0.25)
    m.record_cycle(1.5, ok=True)
    m.set_relation_gauges("switch-host", desired=10, known=8, failed=1)
    m.mark_success("switch-host", when=1_700_000_000.0)

    async with ops.http.get(ops.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("syncd_pairs_total", relation="switch-host", outcome="created") == 5
    assert value("syncd_pairs_total", relation="switch-host", outcome="missing_target") == 1
    api = "batch_create_instance_association"
    assert value("syncd_requests_total", api=api, status="200") == 1
    assert value("syncd_requests_total", api=api, status="429") == 1
    assert value("syncd_request_duration_seconds_count", api=api) == 2
    assert value("syncd_retries_total", api=api, reason="rate_limited") == 1
    assert value("syncd_rate_limit_wait_seconds_total") == 0.25
    assert value("syncd_cycle_duration_seconds_count") == 1
    assert value("syncd_cycles_total", result="ok") == 1
    assert value("syncd_desired_pairs", relation="switch-host") == 10
    assert value("syncd_known_pairs", relation="switch-host") == 8
    assert value("syncd_failed_pairs", relation="switch-host") == 1
    assert value("syncd_last_success_timestamp_seconds", relation="switch-host") == 1.7e9
    assert "process_resident_memory_bytes" in text


async def test_post_resync_calls_back(ops: Ops) -> None:
    async with ops.http.post(ops.url + "/resync") as resp:
        assert resp.status == 202
        assert (await resp.json())["ok"] is True
    assert ops.resyncs == [1]


async def test_resync_refuses_get_and_cross_origin(ops: Ops) -> None:
    async with ops.http.get(ops.url + "/resync") as resp:
        assert resp.status == 405
    async with ops.http.post(ops.url + "/resync", headers={"Origin": "http://evil"}) as resp:
        assert resp.status == 403
    assert ops.resyncs == []


async def test_resync_callback_failure_is_a_500() -> None:
    def boom() -> None:
        raise RuntimeError("nope")

    server = OpsServer(Health(max_age=1), Metrics(process_metrics=False), boom, port=0)
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.post(url + "/resync") as resp:
            assert resp.status == 500
    finally:
        await server.stop()


async def test_two_servers_have_separate_registries() -> None:
    """Each Metrics owns its registry: no 'Duplicated timeseries' across instances."""
    a, b = Metrics(), Metrics()
    a.record_pair("r", "created")
    assert b'outcome="created"' in a.render()[0]
    assert b'outcome="created"' not in b.render()[0]


async def test_busy_port_raises_and_cleans_up(ops: Ops) -> None:
    port = int(ops.url.rsplit(":", 1)[1])
    other = OpsServer(ops.health, ops.metrics, lambda: None, port=port)
    with pytest.raises(OSError):
        await other.start()
    await other.stop()


TOKEN = "resync-token-0123456789"


async def test_resync_with_a_token_needs_it_and_refuses_guesses() -> None:
    resyncs: list[int] = []
    server = OpsServer(
        Health(max_age=1),
        Metrics(process_metrics=False),
        lambda: resyncs.append(1),
        port=0,
        resync_token=TOKEN,
    )
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": f"Bearer {TOKEN}x"},
                {"Authorization": "Bearer é"},
            ):
                async with http.post(url + "/resync", headers=headers) as resp:
                    assert resp.status == 403
                    assert TOKEN not in await resp.text()
            assert resyncs == []
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(url + "/resync", headers=headers) as resp:
                assert resp.status == 202
    finally:
        await server.stop()
    assert resyncs == [1]


@pytest.mark.parametrize(
    ("host", "peer", "token", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1", None, True),
        ("::1", "::1", None, True),
        ("localhost", "127.0.0.1", None, True),
        ("0.0.0.0", "127.0.0.1", None, True),  # syncd resync / kubectl exec in the pod
        ("0.0.0.0", "192.0.2.9", None, False),  # another machine, no token: refused
        ("192.0.2.7", "192.0.2.9", None, False),
        ("0.0.0.0", "192.0.2.9", TOKEN, True),
    ],
)
def test_resync_beyond_loopback_needs_a_token(
    host: str, peer: str, token: str | None, allowed: bool
) -> None:
    from aiohttp.test_utils import make_mocked_request

    server = OpsServer(
        Health(max_age=1),
        Metrics(process_metrics=False),
        lambda: None,
        host=host,
        resync_token=token,
    )
    headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    request = make_mocked_request("POST", "/resync", headers=headers).clone(remote=peer)
    refused = server._resync_refusal(request)
    assert (refused is None) == allowed
    if not allowed:
        assert "resync_token" in str(refused)

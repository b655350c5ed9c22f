"""Whole-request refusals against the auth-on simulator over loopback (issue 12).

3,000 pairs whose batches name 20 hosts and 10 switches the CMDB does not have: every
valid pair is created in one cycle, the 30 fail with their reasons, the relation is
never refused, and the extra requests are logged and bounded. With auth off the CMDB
answers per index and nothing extra is sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.config.settings import ConfigError
from syncd.core.batching import MAX_BATCH
from syncd.core.isolate import isolation_bound
from syncd.runtime.metrics import Metrics
from tests.helpers import (
    ASST,
    REPO,
    Proc,
    capture_logs,
    engine_for,
    fixture_dict,
    load,
    pair_lines,
    run_syncd,
    start_simulator,
    write_config,
    write_csv,
)

STALE_SWITCHES = list(range(4, 41, 4))
"""bk_switch ids 4, 8, ..., 40: every fourth switch is gone (10)."""
STALE_HOSTS = [1001 + 6 * k for k in range(20)]
"""host ids 1001, 1007, ..., 1115: gaps in the host range (20)."""
NO_PRECHECK = 'host_precheck = "off"'
VALID_SWITCHES = [s for s in range(1, 41) if s not in STALE_SWITCHES]
VALID_HOSTS = [h for h in range(1001, 1120) if h not in STALE_HOSTS]


def stale_topology() -> tuple[list[tuple[int, int]], dict[tuple[int, int], str]]:
    """3,000 pairs: 2,970 valid, 30 naming a stale instance (with the reason expected)."""
    valid = [(s, h) for s in VALID_SWITCHES for h in VALID_HOSTS]
    bad: dict[tuple[int, int], str] = {}
    for k, switch in enumerate(STALE_SWITCHES):
        bad[(switch, VALID_HOSTS[7 * k])] = "missing_source"
    for k, host in enumerate(STALE_HOSTS):
        bad[(VALID_SWITCHES[(k * 3) % len(VALID_SWITCHES)], host)] = "missing_target"
    assert len(valid) == 2970 and len(bad) == 30
    return valid + list(bad), bad


def stale_fixture() -> dict[str, Any]:
    doc = fixture_dict()
    doc["instance_ranges"] = {
        "bk_switch": [[s, s] for s in VALID_SWITCHES],
        "host": [[h, h] for h in VALID_HOSTS],
    }
    return doc


def stale_simulator(auth: bool) -> Simulator:
    return Simulator(Fixture.from_dict(stale_fixture()), SimulatorOptions(auth=auth))


def batches_with_stale_hosts(pairs: list[tuple[int, int]]) -> int:
    """How many of the planned batches (sorted, MAX_BATCH each) name a stale host."""
    ordered = sorted(pairs)
    chunks = [ordered[i : i + MAX_BATCH] for i in range(0, len(ordered), MAX_BATCH)]
    return sum(1 for chunk in chunks if any(h in STALE_HOSTS for _, h in chunk))


def check_settled(
    logs: list[dict[str, Any]], bad: dict[tuple[int, int], str], sim: Simulator, desired: int
) -> list[dict[str, Any]]:
    """Every valid pair created, each bad one failed with its reason, each logged once."""
    pairs = pair_lines(logs)
    seen = [(p["bk_inst_id"], p["bk_asst_inst_id"]) for p in pairs]
    assert len(seen) == len(set(seen)) == desired
    failed = {(p["bk_inst_id"], p["bk_asst_inst_id"]): p for p in pairs if p["outcome"] == "failed"}
    assert {k: p["reason"] for k, p in failed.items()} == bad
    assert all(p["error"] and p["batch"] for p in failed.values())
    assert len(sim.pairs(ASST)) == desired - len(bad)
    assert not [line for line in logs if line["event"] in ("relation_refused", "relation_failed")]
    (relation,) = [line for line in logs if line["event"] == "relation"]
    assert relation["error"] is None and relation["failed"] == 30
    assert relation["created"] == desired - 30
    return pairs


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_stale_instances_fail_alone_when_reacting(tmp_path: Path, gateway: str) -> None:
    desired, bad = stale_topology()
    assert batches_with_stale_hosts(desired) >= 10  # spread: most batches are refused
    sim = stale_simulator(auth=True)
    async with sim.running(host="127.0.0.1", port=0) as url:
        cfg = write_config(
            tmp_path,
            url,
            write_csv(tmp_path / "t.csv", desired),
            gateway=gateway,
            sync_extra='host_precheck = "off"',
        )
        settings = load(cfg)
        metrics = Metrics()
        async with engine_for(settings, observer=metrics) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
        stats = sim.stats()
    pairs = check_settled(logs, bad, sim, len(desired))
    (relation,) = report.relations
    # Each stale host is named by its batch's refusal: one extra request each, no more.
    assert relation.isolation_requests == len(STALE_HOSTS)
    creates = stats["requests_by_api"]["batch_create_instance_association"]
    assert creates == len(desired) // MAX_BATCH + relation.isolation_requests
    isolated = [line for line in logs if line["event"] == "batch_isolated"]
    assert sum(line["isolation_requests"] for line in isolated) == len(STALE_HOSTS)
    # A stale host's pair is logged under the refused request that named it; the rest
    # of that batch under the resend, with a batch number of its own.
    host_lines = [p for p in pairs if p.get("reason") == "missing_target"]
    assert all("has no relations" in p["error"] for p in host_lines)
    assert len({p["batch"] for p in pairs}) == creates
    sample = metrics.isolation_requests.labels(relation="switch-host")._value.get()
    assert sample == len(STALE_HOSTS)


async def test_precheck_holds_stale_hosts_back_without_sending(tmp_path: Path) -> None:
    desired, bad = stale_topology()
    sim = stale_simulator(auth=True)
    async with sim.running(host="127.0.0.1", port=0) as url:
        cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired))
        settings = load(cfg)
        assert settings.sync.host_precheck == "auto"
        async with engine_for(settings) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
        stats = sim.stats()
    pairs = check_settled(logs, bad, sim, len(desired))
    assert report.relations[0].isolation_requests == 0
    assert stats["requests_by_api"]["list_hosts_without_biz"] == 1
    held = [p for p in pairs if p.get("checked_by") == "list_hosts_without_biz"]
    assert sorted((p["bk_inst_id"], p["bk_asst_inst_id"]) for p in held) == sorted(
        k for k, reason in bad.items() if reason == "missing_target"
    )


async def test_a_first_syncs_host_check_is_asked_before_the_plan_holds_the_loop(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """The plan is CPU only: while it runs, nothing else on the loop moves. The host
    check must be asked before it (its request then usually leaves in the loop turn the
    read gives up, and its answer comes back during the plan), not after."""
    desired, _ = stale_topology()
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(stale_fixture()))
    url = start_simulator(procs, fixture)  # its own thread: it answers while the loop waits
    simulator = procs[-1].simulator
    settings = load(write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired)))
    asked_before_planning: list[set[int]] = []
    async with engine_for(settings) as engine:
        plan = engine.decide
        hosts = engine.apply.hosts
        assert hosts is not None

        def decide(*args: Any, **kw: Any) -> Any:
            asked_before_planning.append(set().union(*(ids for ids, _ in hosts._ahead)))
            return plan(*args, **kw)

        engine.decide = decide  # type: ignore[method-assign]
        report = await engine.cycle()
    assert report.relations[0].error is None
    # Every host of the source was asked about before the plan, and only once in all.
    assert asked_before_planning == [{d for _, d in desired}]
    assert host_checks(simulator) == 1


def host_checks(simulator: Simulator) -> int:
    """list_hosts_without_biz requests the simulator has answered."""
    return int(simulator.stats()["requests_by_api"].get("list_hosts_without_biz", 0))


async def test_auto_precheck_follows_what_the_last_cycle_met(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(SimulatorOptions(auth=True), switches=2, hosts=100)
    topo = tmp_path / "t.csv"
    rows = [(1, 1000 + h) for h in range(1, 51)]
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = load(write_config(tmp_path, url, write_csv(topo, rows)))
        async with engine_for(settings) as engine:

            async def cycle(new: list[tuple[int, int]]) -> tuple[int, int]:
                """(host checks, isolation requests) of one cycle adding ``new`` pairs."""
                rows.extend(new)
                write_csv(topo, rows)
                before = sim.stats()["requests_by_api"].get("list_hosts_without_biz", 0)
                report = await engine.cycle()
                after = sim.stats()["requests_by_api"].get("list_hosts_without_biz", 0)
                return after - before, report.relations[0].isolation_requests

            assert await cycle([]) == (1, 0)  # first cycle: check the hosts in bulk
            assert await cycle([(2, 1000 + h) for h in range(51, 101)]) == (0, 0)  # clean: react
            # The refusal names the stale host; the rest is resent: one extra request.
            assert await cycle([(2, 5000), (1, 1100)]) == (0, 1)
            assert await cycle([(2, 5001), (1, 1099)]) == (1, 0)  # met one: check again
            assert await cycle([(1, 1051)]) == (1, 0)  # 5001 was met last cycle: check
            assert await cycle([(1, 1052)]) == (0, 0)  # that check met none: react again
    assert len(sim.pairs(ASST)) == 104


async def test_auth_off_answers_per_index_with_no_extra_request(tmp_path: Path) -> None:
    desired, bad = stale_topology()
    sim = stale_simulator(auth=False)
    async with sim.running(host="127.0.0.1", port=0) as url:
        cfg = write_config(
            tmp_path,
            url,
            write_csv(tmp_path / "t.csv", desired),
            sync_extra='host_precheck = "off"',
        )
        async with engine_for(load(cfg)) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
        stats = sim.stats()
    check_settled(logs, bad, sim, len(desired))
    assert report.relations[0].isolation_requests == 0
    assert (
        stats["requests_by_api"]["batch_create_instance_association"] == len(desired) // MAX_BATCH
    )
    assert not [line for line in logs if line["event"] == "batch_isolated"]


async def test_a_relation_level_refusal_is_never_bisected(tmp_path: Path) -> None:
    doc = fixture_dict(switches=3, hosts=300)
    doc["apps"][0]["deny"] = ["batch_create_instance_association"]  # IAM: 9900403
    sim = Simulator(Fixture.from_dict(doc), SimulatorOptions(auth=True))
    desired = [(s, 1000 + h) for s in (1, 2, 3) for h in range(1, 301)]
    async with sim.running(host="127.0.0.1", port=0) as url:
        cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired))
        async with engine_for(load(cfg)) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
        stats = sim.stats()
    (relation,) = report.relations
    assert relation.error is not None and relation.isolation_requests == 0
    refused = [line for line in logs if line["event"] == "relation_refused"]
    assert len(refused) == 1 and "permission" in refused[0]["fix"]
    assert refused[0]["permission"]
    # At most each batch's first request, never a half of one.
    batches = -(-len(desired) // MAX_BATCH)
    assert stats["requests_by_api"]["batch_create_instance_association"] <= batches
    assert sim.pairs(ASST) == set()


POISON = {(1, 1077), (2, 1033), (3, 1150)}
"""Details a (hypothetical) topo bug refuses the whole request for, naming nothing:
one in each batch of 200."""


@asynccontextmanager
async def poisoning_proxy(upstream: str) -> AsyncIterator[str]:
    """A loopback HTTP proxy in front of the simulator: a batch create that carries
    one of :data:`POISON` is refused as a whole the way a topo panic is (1199999, no names)."""
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        if request.path.rstrip("/").endswith("batch_create_instance_association"):
            details = json.loads(body).get("details", [])
            if any((d["bk_inst_id"], d["bk_asst_inst_id"]) in POISON for d in details):
                refusal = {"result": False, "code": 1199999, "data": None}
                refusal["message"] = "'topo' Internal Server Error"
                return web.json_response(refusal)
        async with session.request(
            request.method, upstream + request.path_qs, data=body, headers=request.headers
        ) as resp:
            return web.Response(
                body=await resp.read(), status=resp.status, content_type="application/json"
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await session.close()


async def test_an_unnamed_refusal_is_bisected_to_the_poison_detail(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(SimulatorOptions(auth=True), switches=3, hosts=200)
    desired = [(s, 1000 + h) for s in (1, 2, 3) for h in range(1, 201)]
    async with sim.running(host="127.0.0.1", port=0) as url, poisoning_proxy(url) as proxy:
        cfg = write_config(tmp_path, proxy, write_csv(tmp_path / "t.csv", desired))
        async with engine_for(load(cfg)) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
    (relation,) = report.relations
    assert sim.pairs(ASST) == set(desired) - POISON
    assert relation.failed == 3 and relation.error is None
    assert 0 < relation.isolation_requests <= 3 * isolation_bound(1, MAX_BATCH)
    failed = [p for p in pair_lines(logs) if p["outcome"] == "failed"]
    assert {(p["bk_inst_id"], p["bk_asst_inst_id"]) for p in failed} == POISON
    assert all(p["reason"] == "other" and "Internal Server Error" in p["error"] for p in failed)
    assert len(pair_lines(logs)) == len(desired)


async def test_a_spent_isolation_budget_defers_to_the_next_cycle(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(SimulatorOptions(auth=True), switches=3, hosts=200)
    desired = [(s, 1000 + h) for s in (1, 2, 3) for h in range(1, 201)]
    async with sim.running(host="127.0.0.1", port=0) as url, poisoning_proxy(url) as proxy:
        topo = write_csv(tmp_path / "t.csv", desired)
        settings = load(write_config(tmp_path, proxy, topo, sync_extra="isolation_budget = 16"))
        async with engine_for(settings) as engine:
            with capture_logs() as logs:
                first = (await engine.cycle()).relations[0]
            # Three bisections share 16 requests: some details wait (not failed).
            assert first.isolation_requests == 16 and first.deferred > 0
            assert first.failed < 3 and first.error is None
            logged = {(p["bk_inst_id"], p["bk_asst_inst_id"]) for p in pair_lines(logs)}
            assert len(logged) == len(desired) - first.deferred
            failed = first.failed
            for _ in range(10):  # a fresh budget each cycle; each cycle makes progress
                report = (await engine.cycle()).relations[0]
                failed += report.failed
                if report.deferred == 0:
                    break
    assert report.deferred == 0 and failed == 3
    assert sim.pairs(ASST) == set(desired) - POISON


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gateway", "precheck", "process"),
    [("esb", "off", True), ("apigw", "off", False), ("esb", "on", False)],
    ids=["esb-off-process", "apigw-off", "esb-on"],
)
def test_syncd_once_against_auth_on_simulator(
    tmp_path: Path, procs: list[Proc], gateway: str, precheck: str, process: bool
) -> None:
    """`syncd once` exits 1 only because of the 30 stale pairs: once as a real process, the
    other ways through ``syncd.cli.main`` in this process (the same command, no start-up)."""
    desired, bad = stale_topology()
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps({**stale_fixture(), "auth": True}), encoding="utf-8")
    url = start_simulator(procs, fixture, "--rate-limit", "off")
    cfg = write_config(
        tmp_path,
        url,
        write_csv(tmp_path / "t.csv", desired),
        gateway=gateway,
        sync_extra=f'host_precheck = "{precheck}"',
    )
    if process:
        once = Proc(["-m", "syncd", "once", "--config", str(cfg)])
        procs.append(once)
        assert once.wait(120) == 1, once.stderr()[-2000:]
        logs = once.lines
    else:
        ran = run_syncd("once", "--config", str(cfg))
        assert ran.code == 1, ran.stderr[-2000:]
        logs = ran.lines
    pairs = pair_lines(logs)
    failed = {
        (p["bk_inst_id"], p["bk_asst_inst_id"]): p["reason"]
        for p in pairs
        if p["outcome"] == "failed"
    }
    assert failed == bad
    created = {(p["bk_inst_id"], p["bk_asst_inst_id"]) for p in pairs if p["outcome"] == "created"}
    assert created == set(desired) - set(bad)
    assert not [line for line in logs if line["event"] in ("relation_refused", "relation_failed")]
    (relation,) = [line for line in logs if line["event"] == "relation"]
    assert relation["error"] is None and relation["failed"] == 30 and relation["deferred"] == 0
    isolated = sum(line["isolation_requests"] for line in logs if line["event"] == "batch_isolated")
    assert relation["isolation_requests"] == isolated
    batches = batches_with_stale_hosts(desired)
    if precheck == "off":
        # One per stale host (each refusal names one), within the per-batch bound.
        assert isolated == len(STALE_HOSTS)
        assert isolated <= batches * isolation_bound(len(STALE_HOSTS), MAX_BATCH)
    else:
        assert isolated == 0


@pytest.mark.slow
def test_demo_runs_against_an_auth_on_cmdb() -> None:
    """`syncd demo` (through ``syncd.cli.main`` here): the demo fixture keeps bk-cmdb's
    default (auth on); host 150 and switch 9 fail with their reasons and every other pair
    is created."""
    fixture = (REPO / "config" / "demo" / "fixture.yaml").read_text(encoding="utf-8")
    assert "\nauth:" not in fixture  # the simulator's default: on
    demo = run_syncd("demo", "--dir", str(REPO / "config" / "demo"))
    assert demo.code == 0, demo.stderr[-2000:]
    failed = {
        (p["bk_inst_id"], p["bk_asst_inst_id"]): p["reason"]
        for p in pair_lines(demo.lines)
        if p["outcome"] == "failed"
    }
    assert failed == {(3, 150): "missing_target", (9, 101): "missing_source"}
    assert not [line for line in demo.lines if line["event"] == "relation_refused"]
    cycles = [line for line in demo.lines if line["event"] == "cycle"]
    assert [c["failed"] for c in cycles] == [2, 0] and cycles[1]["sent"] == 0
    summary = demo.stderr
    assert "2 failed" in summary and "cycle 2: 0 sent" in summary


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("isolation_budget = 5", "sync.isolation_budget"),
        ("isolation_budget = -1", "sync.isolation_budget"),
        ('isolation_budget = "lots"', "sync.isolation_budget"),
        ('host_precheck = "maybe"', "sync.host_precheck"),
        ("host_precheck = true", "sync.host_precheck"),
    ],
)
def test_isolation_settings_are_validated(tmp_path: Path, line: str, named: str) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:1", tmp_path / "t.csv", sync_extra=line)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load(cfg)


def test_isolation_settings_default_and_accept(tmp_path: Path) -> None:
    plain = load(write_config(tmp_path, "http://127.0.0.1:1", tmp_path / "t.csv"))
    assert (plain.sync.isolation_budget, plain.sync.host_precheck) == (1000, "auto")
    extra = 'isolation_budget = 16\nhost_precheck = "on"'
    chosen = load(
        write_config(tmp_path, "http://127.0.0.1:1", tmp_path / "t.csv", sync_extra=extra)
    )
    assert (chosen.sync.isolation_budget, chosen.sync.host_precheck) == (16, "on")


async def test_hosts_asked_ahead_are_not_asked_again(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(SimulatorOptions(auth=True), switches=2, hosts=100)
    topo = write_csv(tmp_path / "t.csv", [(1, 1001)])
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = load(write_config(tmp_path, url, topo))
        async with engine_for(settings) as engine:
            hosts = engine.apply.hosts
            assert hosts is not None

            def asked() -> int:
                return int(sim.stats()["requests_by_api"].get("list_hosts_without_biz", 0))

            hosts.ask_ahead({1001, 1002, 5000})
            assert await hosts.missing({1001, 5000}) == {5000}
            assert asked() == 1  # the answer asked ahead, not a second request
            assert await hosts.missing({1002, 1003}) == set()
            assert asked() == 2  # 1002 was confirmed ahead; only 1003 is asked
            # A first sync asks during the resync, once, and still holds the stale host back.
            write_csv(topo, [(1, 1001), (1, 5001), (2, 1004)])
            hosts.forget()
            report = await engine.cycle()
            assert asked() == 3
            assert report.relations[0].failed == 1 and report.relations[0].created == 2

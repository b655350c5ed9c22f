"""Whole-request refusals against the auth-on simulator over loopback (issue 12).

3,000 pairs whose batches name 20 hosts and 10 switches the CMDB does not have: every
valid pair is created in one cycle, the 30 fail with their reasons, the relation is
never refused, and the extra requests are logged and bounded. With auth off the CMDB
answers per index and nothing extra is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncd.batching import MAX_BATCH
from syncd.metrics import Metrics
from syncd.simulator import Fixture, Simulator, SimulatorOptions
from tests.helpers import (
    ASST,
    capture_logs,
    engine_for,
    fixture_dict,
    load,
    pair_lines,
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
        assert settings.sync.host_precheck == "on"
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

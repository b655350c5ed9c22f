"""A real Prometheus scrapes a real ``syncd run``: the rules' and the dashboard's queries
are checked against what syncd actually exports, so a renamed metric breaks a test, not an
alert. One Prometheus, one daemon and one simulator serve every test in this module.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from opstools import require_tool
from promrules import (
    PENDING_METRICS,
    RULES,
    alerts,
    dashboard,
    metric_selectors,
    panel_queries,
    rules,
)

from tests.helpers import Proc, fixture_dict, start_simulator, write_config, write_csv

pytestmark = [pytest.mark.slow, pytest.mark.needs_tool("prometheus")]


@dataclass(frozen=True)
class Prometheus:
    """The HTTP API of the Prometheus under test."""

    base: str

    def get(self, path: str) -> dict[str, Any]:
        return _get(self.base + path)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; it must parse and evaluate, the result may be empty."""
        doc = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert doc["status"] == "success", (expr, doc)
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result


STARTUP_DEADLINE = 60.0
"""Seconds for the simulator, the daemon and Prometheus to start and gather enough samples."""

DASHBOARD_VARS = {
    "$__rate_interval": "15s",
    "$job": "syncd",
    "$instance": ".*",
    "$relation": ".*",
}
"""What Grafana would substitute: all instances and relations, a rate window of 15 scrapes."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def _start_daemon(procs: list[Proc], tmp: Path, ops_port: int) -> None:
    """``syncd run`` against a rate-limiting simulator, its ops server on ``ops_port``.

    The simulator allows 2 requests/s per API so some requests are refused with 429 (retries and
    rate-limit waits get series); host 1999 does not exist, so one pair is held back. Auth is
    on (bk-cmdb's default): the batch naming host 1999 is refused as a whole, the pair fails
    alone and the rest of its batch is resent (an isolation request).
    """
    fixture = tmp / "fixture.json"
    fixture.write_text(json.dumps(fixture_dict(switches=4, hosts=10)), encoding="utf-8")
    url = start_simulator(procs, fixture, "--rate-limit", "2")
    pairs: list[tuple[Any, Any]] = [(s, 1000 + h) for s in range(1, 5) for h in range(1, 11)]
    topology = write_csv(tmp / "topology.csv", [*pairs, (1, 1999)])
    # The held-back pair is retried every cycle, so request and cycle series keep moving;
    # without the host pre-check it is sent (and refused) each time.
    backoff = 'pair_backoff_base = 0.5\npair_backoff_cap = 0.5\nhost_precheck = "off"'
    cfg = write_config(
        tmp, url, topology, interval=1, cmdb_extra="batch_size = 10", sync_extra=backoff
    )
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace(
            "[ops]\nenabled = false", f"[ops]\nenabled = true\nport = {ops_port}"
        ),
        encoding="utf-8",
    )
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    daemon.wait_for(lambda line: line.get("event") == "started", timeout=20)


def _start_prometheus(procs: list[subprocess.Popen[bytes]], tmp: Path, ops_port: int) -> str:
    binary = require_tool("prometheus", "apt-get install prometheus")
    port = _free_port()
    config = {
        "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "syncd",
                "static_configs": [{"targets": [f"127.0.0.1:{ops_port}"]}],
            }
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    log = (tmp / "prometheus.log").open("wb")
    procs.append(
        subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    return f"http://127.0.0.1:{port}"


def _is_ready(base: str) -> bool:
    with urllib.request.urlopen(f"{base}/-/ready", timeout=5) as resp:
        return bool(resp.status == 200)


def _wait(
    what: str,
    ready: Callable[[], bool],
    deadline: float,
    server: subprocess.Popen[bytes],
    log: Path,
) -> None:
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"no {what} in time; prometheus log: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Instant queries against a Prometheus that has scraped syncd for a few cycles."""
    tmp = tmp_path_factory.mktemp("scrape")
    procs: list[Proc] = []
    servers: list[subprocess.Popen[bytes]] = []
    deadline = time.monotonic() + STARTUP_DEADLINE
    try:
        # Prometheus first, so it scrapes syncd from its first cycle on.
        ops_port = _free_port()
        api = Prometheus(_start_prometheus(servers, tmp, ops_port))
        (started,) = servers
        log = tmp / "prometheus.log"
        _wait("prometheus ready", lambda: _is_ready(api.base), deadline, started, log)
        _start_daemon(procs, tmp, ops_port)
        query = api.query

        def enough_samples() -> bool:
            # Two finished cycles and 5 scrapes: every rate() window has samples, every
            # counter the run can move has moved, and the rules have been evaluated.
            return bool(
                query("count_over_time(syncd_build_info[1m]) >= 5")
                and query("syncd_cycles_total >= 2")
                and query("syncd_retries_total")
                and query("syncd:last_success_age_seconds")
            )

        _wait(
            "5 scrapes, two cycles and a rate-limit retry", enough_samples, deadline, started, log
        )
        yield api
    finally:
        for server in servers:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
        for proc in procs:
            proc.kill()


def _rule_selectors() -> set[str]:
    return {sel for rule in rules() for sel in metric_selectors(rule["expr"])}


def test_the_target_is_up(prom: Prometheus) -> None:
    (up,) = prom.query('up{job="syncd"}')
    assert up["value"][1] == "1"


@pytest.mark.parametrize("selector", sorted(_rule_selectors() - PENDING_METRICS))
def test_every_series_the_rules_read_is_scraped(prom: Prometheus, selector: str) -> None:
    assert prom.query(selector), f"{selector} is not exported; a rule reading it would never fire"


def test_pending_series_are_still_valid_queries(prom: Prometheus) -> None:
    assert _rule_selectors() >= PENDING_METRICS
    for selector in PENDING_METRICS:
        prom.query(selector)  # parses and evaluates; the series may not exist yet


def test_rules_evaluate_without_error_and_nothing_fires(prom: Prometheus) -> None:
    groups = prom.get("/api/v1/rules")["data"]["groups"]
    loaded = {r.get("name") for g in groups for r in g["rules"]}
    assert loaded == {r.get("alert", r.get("record")) for r in rules()}
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    # A healthy daemon pages nobody. Only the 429s this run provokes on purpose may make
    # SyncdRateLimited pending (it needs 15 minutes to fire).
    assert prom.query('ALERTS{alertstate="firing"}') == []
    pending = {a["metric"]["alertname"] for a in prom.query("ALERTS")}
    assert pending <= {"SyncdRateLimited"}


def test_recording_rules_see_the_running_daemon(prom: Prometheus) -> None:
    (age,) = prom.query("syncd:last_success_age_seconds")
    assert 0 <= float(age["value"][1]) < 30
    (rel,) = prom.query('syncd:relation_last_success_age_seconds{relation="switch-host"}')
    assert 0 <= float(rel["value"][1]) < 30
    outcomes = {s["metric"]["outcome"] for s in prom.query("syncd:pairs:rate5m")}
    assert {"created", "failed"} <= outcomes
    assert prom.query('syncd:rate_limited:ratio_rate10m{api="batch_create_instance_association"}')


def test_alert_expressions_evaluate_on_real_series(prom: Prometheus) -> None:
    for rule in alerts():
        prom.query(rule["expr"])  # status success; empty, since nothing is wrong
    (ready,) = prom.query("syncd_ready")
    assert ready["value"][1] == "1"
    (interval,) = prom.query("syncd_sync_interval_seconds")
    assert interval["value"][1] == "1"
    (held,) = prom.query('syncd_failed_pairs{relation="switch-host"}')
    assert held["value"][1] == "1"
    (isolation,) = prom.query('syncd_isolation_requests_total{relation="switch-host"}')
    assert float(isolation["value"][1]) >= 1


def _substitute(expr: str) -> str:
    for name in sorted(DASHBOARD_VARS, key=len, reverse=True):
        expr = expr.replace(name, DASHBOARD_VARS[name])
    assert "$" not in expr, f"unknown dashboard variable in {expr}"
    return expr


@pytest.mark.parametrize(
    ("title", "expr"), panel_queries(), ids=[f"{t}:{e[:40]}" for t, e in panel_queries()]
)
def test_every_dashboard_query_returns_data(prom: Prometheus, title: str, expr: str) -> None:
    values = [sample["value"][1] for sample in prom.query(_substitute(expr))]
    assert values, f"panel {title!r}: no data for {expr}"
    assert any(v != "NaN" for v in values), f"panel {title!r}: only NaN for {expr}"


def test_every_dashboard_variable_has_values(prom: Prometheus) -> None:
    variables = [v for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    assert {v["name"] for v in variables} == {"job", "instance", "relation"}
    for var in variables:
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
        assert match is not None, var
        selector, label = _substitute(match.group(1)), match.group(2)
        path = f"/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": selector})
        assert prom.get(path)["data"], f"variable {var['name']}: no values for {selector}"

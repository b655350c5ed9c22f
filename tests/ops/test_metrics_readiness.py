"""The two series the alerts need beyond the engine's: readiness and the sync interval."""

from __future__ import annotations

from syncd.runtime.health import Health
from syncd.runtime.metrics import Metrics


def _samples(metrics: Metrics) -> dict[str, float]:
    body, _ = metrics.render()
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_syncd_ready_follows_readyz_at_each_scrape() -> None:
    now = [100.0]
    health = Health(max_age=10, clock=lambda: now[0])
    metrics = Metrics(process_metrics=False, sync_interval=300)
    metrics.report_readiness(lambda: health.ready()[0])
    assert _samples(metrics)["syncd_ready"] == 0.0  # no cycle finished yet
    health.cycle_finished(True, {})
    assert health.ready()[0]
    assert _samples(metrics)["syncd_ready"] == 1.0
    now[0] += 11  # older than max_age: /readyz says not ready, and so does the metric
    assert _samples(metrics)["syncd_ready"] == 0.0
    health.cycle_finished(False, {"relations_failed": 1})
    assert _samples(metrics)["syncd_ready"] == 0.0
    assert _samples(metrics)["syncd_sync_interval_seconds"] == 300.0


def test_sync_interval_is_absent_when_unknown() -> None:
    assert "syncd_sync_interval_seconds" not in _samples(Metrics(process_metrics=False))

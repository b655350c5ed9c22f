"""Prometheus metrics for one syncd process, on a registry of its own.

A private ``CollectorRegistry`` (not the global default) keeps tests and
several daemons in one process from colliding on metric names. Label values
are relation names, API names, HTTP statuses, outcomes and retry reasons:
never URLs, usernames, tokens or secrets, so /metrics is safe to scrape
without authentication.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client import (
    gc_collector as _gc,
)
from prometheus_client import (
    platform_collector as _platform,
)
from prometheus_client import (
    process_collector as _process,
)
from prometheus_client.exposition import choose_encoder

from syncd import __version__

REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds; up to cmdb.timeout's default, where a batch of 200 can legitimately take a while."""

CYCLE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Seconds; a first sync of a large topology under a rate limit takes many minutes."""

_MAX_LABEL = 128
"""A label longer than this is a bug (or a leak): cut it so it can't blow up the TSDB."""


def _label(value: object) -> str:
    return str(value)[:_MAX_LABEL]


@dataclass(frozen=True)
class Series:
    """One metric as data: its type, name, help text, labels (and a histogram's buckets)."""

    kind: type[Counter] | type[Gauge] | type[Histogram]
    name: str
    doc: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def make(self, registry: CollectorRegistry) -> Any:
        if self.kind is Histogram:
            return Histogram(
                self.name, self.doc, self.labels, registry=registry, buckets=self.buckets
            )
        return self.kind(self.name, self.doc, self.labels, registry=registry)


SERIES: dict[str, Series] = {
    "pairs": Series(
        Counter,
        "syncd_pairs_total",
        "Pairs by what the CMDB said (created, exists, missing_source, ...).",
        ("relation", "outcome"),
    ),
    "requests": Series(
        Counter,
        "syncd_requests_total",
        "CMDB API requests by API and result (HTTP status or error class).",
        ("api", "status"),
    ),
    "request_duration": Series(
        Histogram,
        "syncd_request_duration_seconds",
        "CMDB API request latency, end to end, per attempt.",
        ("api",),
        REQUEST_BUCKETS,
    ),
    "rate_limit_wait": Series(
        Counter,
        "syncd_rate_limit_wait_seconds_total",
        "Seconds spent waiting for the client-side rate limiter.",
    ),
    "retries": Series(
        Counter,
        "syncd_retries_total",
        "Request retries by API and reason (rate_limited, timeout, 5xx, ...).",
        ("api", "reason"),
    ),
    "cycle_duration": Series(
        Histogram,
        "syncd_cycle_duration_seconds",
        "Duration of one sync cycle over all relations.",
        buckets=CYCLE_BUCKETS,
    ),
    "cycles": Series(
        Counter,
        "syncd_cycles_total",
        "Cycles finished, by result (ok: no relation-level failure).",
        ("result",),
    ),
    "last_success": Series(
        Gauge,
        "syncd_last_success_timestamp_seconds",
        "Unix time a relation last finished a cycle without a relation-level failure.",
        ("relation",),
    ),
    "isolation_requests": Series(
        Counter,
        "syncd_isolation_requests_total",
        "Extra batch-create requests sent to find details the CMDB refused as a whole.",
        ("relation",),
    ),
    "watch_events": Series(
        Counter,
        "syncd_watch_events_total",
        "CMDB association events the watch received, by watched object and type.",
        ("object", "type"),
    ),
    "watch_lag": Series(
        Gauge,
        "syncd_watch_lag_seconds",
        "Seconds between the CMDB stamping the last event and syncd applying it.",
        ("object",),
    ),
    "webhooks": Series(
        Counter,
        "syncd_webhooks_total",
        "Webhook deliveries by outcome (applied, full_read, duplicate, unsigned, busy, ...).",
        ("result",),
    ),
    "relists": Series(
        Counter,
        "syncd_relists_total",
        "Lists a relation needed beyond its first (expired cursor, gap, relist_interval).",
        ("relation", "reason"),
    ),
    "http_trouble": Series(
        Counter,
        "syncd_http_rejected_total",
        "HTTP connections and requests a listener refused, dropped or rejected as malformed.",
        ("listener", "kind"),
    ),
    "desired": Series(Gauge, "syncd_desired_pairs", "Pairs the source wants.", ("relation",)),
    "known": Series(Gauge, "syncd_known_pairs", "Pairs known to be in the CMDB.", ("relation",)),
    "failed": Series(
        Gauge,
        "syncd_failed_pairs",
        "Pairs the CMDB refused and that are held back for now.",
        ("relation",),
    ),
    "kept_uncertain": Series(
        Gauge,
        "syncd_kept_uncertain_pairs",
        "Pairs not in the source that pruning and moves keep, because a fact with an "
        "unresolved key could still state them.",
        ("relation",),
    ),
}
"""The series the record_* methods feed, by attribute name (order: as exposed)."""

BUILD_INFO = Series(Gauge, "syncd_build_info", "syncd version", ("version",))
SYNC_INTERVAL = Series(
    Gauge,
    "syncd_sync_interval_seconds",
    "sync.interval: seconds between cycles (alerts measure staleness in intervals).",
)
READY = Series(Gauge, "syncd_ready", "1 while /readyz answers ready, else 0; read at scrape time.")


class Metrics:
    """Everything /metrics exposes; the engine and client call the record_* methods."""

    pairs: Counter
    requests: Counter
    request_duration: Histogram
    rate_limit_wait: Counter
    retries: Counter
    cycle_duration: Histogram
    cycles: Counter
    last_success: Gauge
    isolation_requests: Counter
    watch_events: Counter
    watch_lag: Gauge
    relists: Counter
    desired: Gauge
    known: Gauge
    failed: Gauge
    webhooks: Counter
    http_trouble: Counter
    kept_uncertain: Gauge

    def __init__(self, *, process_metrics: bool = True, sync_interval: float | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        if process_metrics:
            _process.ProcessCollector(registry=reg)
            _platform.PlatformCollector(registry=reg)
            _gc.GCCollector(registry=reg)
        BUILD_INFO.make(reg).labels(version=__version__).set(1)
        for attr, series in SERIES.items():
            setattr(self, attr, series.make(reg))
        if sync_interval is not None:
            # Alerts count staleness in intervals, so the interval itself is a series
            # (absent rather than 0 when unknown: 3 x 0 seconds would page at once).
            SYNC_INTERVAL.make(reg).set(sync_interval)
        self.ready: Gauge = READY.make(reg)

    def report_readiness(self, is_ready: Callable[[], bool]) -> None:
        """``syncd_ready`` asks ``is_ready`` at each scrape, so it never disagrees with /readyz."""
        self.ready.set_function(lambda: 1.0 if is_ready() else 0.0)

    def record_isolation(self, relation: str, requests: int) -> None:
        """Isolation requests one batch cost (``syncd.core.isolate``), beyond its first request."""
        if requests > 0:
            self.isolation_requests.labels(relation=_label(relation)).inc(requests)

    def record_pair(self, relation: str, outcome: str, n: int = 1) -> None:
        """Count ``n`` pairs of one relation with one outcome (one call per batch is enough)."""
        if n > 0:
            self.pairs.labels(relation=_label(relation), outcome=_label(outcome)).inc(n)

    def watching(self, relation: str) -> None:
        """The watch runs for ``relation``: its repaired count exists from 0 on (alerts read it)."""
        self.pairs.labels(relation=_label(relation), outcome="repaired")

    def record_watch_events(self, bk_obj_id: str, event_type: str, n: int) -> None:
        if n > 0:
            self.watch_events.labels(object=_label(bk_obj_id), type=_label(event_type)).inc(n)

    def set_watch_lag(self, bk_obj_id: str, seconds: float) -> None:
        self.watch_lag.labels(object=_label(bk_obj_id)).set(max(seconds, 0.0))

    def record_http_trouble(self, listener: str, kind: str) -> None:
        """One refused or dropped connection, or one malformed request (runtime.listener)."""
        self.http_trouble.labels(listener=_label(listener), kind=_label(kind)).inc()

    def record_webhook(self, result: str) -> None:
        self.webhooks.labels(result=_label(result)).inc()

    def webhook_results(self, results: tuple[str, ...]) -> None:
        """Show every outcome from the start (at 0), so a rate() over it has a base."""
        for result in results:
            self.webhooks.labels(result=_label(result))

    def record_relist(self, relation: str, reason: str) -> None:
        self.relists.labels(relation=_label(relation), reason=_label(reason)).inc()

    def record_request(self, api: str, status: int | str, seconds: float) -> None:
        """One attempt of one API call; ``status`` is the HTTP status or e.g. 'timeout'."""
        self.requests.labels(api=_label(api), status=_label(status)).inc()
        self.request_duration.labels(api=_label(api)).observe(max(seconds, 0.0))

    def record_rate_limit_wait(self, seconds: float) -> None:
        if seconds > 0:
            self.rate_limit_wait.inc(seconds)

    def record_retry(self, api: str, reason: str) -> None:
        self.retries.labels(api=_label(api), reason=_label(reason)).inc()

    def record_cycle(self, seconds: float, *, ok: bool = True) -> None:
        self.cycle_duration.observe(max(seconds, 0.0))
        self.cycles.labels(result="ok" if ok else "failed").inc()

    def set_relation_gauges(self, relation: str, desired: int, known: int, failed: int) -> None:
        rel = _label(relation)
        self.desired.labels(relation=rel).set(desired)
        self.known.labels(relation=rel).set(known)
        self.failed.labels(relation=rel).set(failed)

    def set_kept_uncertain(self, relation: str, pairs: int) -> None:
        self.kept_uncertain.labels(relation=_label(relation)).set(pairs)

    def mark_success(self, relation: str, when: float | None = None) -> None:
        """Alert on ``time() - syncd_last_success_timestamp_seconds`` growing."""
        self.last_success.labels(relation=_label(relation)).set(
            time.time() if when is None else when
        )

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition the scraper's ``Accept`` header asks for (OpenMetrics or the text
        format, prometheus_client's own negotiation) and its Content-Type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

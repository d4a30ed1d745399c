"""Prometheus metrics of the contract (section 5). Labels take bounded values only."""

from __future__ import annotations

import math
import socket
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

from models.shard import MAX_CARRIERS  # carriers with a scan-age series

INPUT_TOPICS = ("scans", "disputes", "weather", "shipments", "merchant-actions")
OUTCOMES = ("accepted", "duplicate", "rejected", "late")
# Each alert type with the severities it is raised at: its series exist at 0 from the start.
ALERT_SEVERITIES = {
    "NO_MOVEMENT": ("WARNING",),
    "DWELL_ANOMALY": ("WARNING",),
    "SIGNED_DISPUTED": ("WARNING", "CRITICAL"),
    "ROUTE_DAMAGE_RATE": ("WARNING", "CRITICAL"),
    "WEATHER_DELAY_CLUSTER": ("WARNING", "CRITICAL"),
    "FEED_SILENT": ("CRITICAL",),
    "PICKUP_OVERDUE": ("WARNING",),
    "PROMISE_MISSED": ("WARNING",),
    "DISPUTE_UNANSWERED": ("CRITICAL",),
}
HOUR_S = 3600
NOTIFICATION_OUTCOMES = ("emitted",)


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.registry = registry
        self.events = Counter(
            "parcelwatch_events_total", "Input records by topic and outcome.",
            ["topic", "outcome"], registry=registry)
        for topic in INPUT_TOPICS:
            for outcome in OUTCOMES:
                self.events.labels(topic, outcome)  # at 0 from the start, for increase()
        self.carrier_scan_age = Gauge(
            "parcelwatch_carrier_scan_age_seconds",
            "Event time since each carrier's latest scan (the watermark minus it, at least 0).",
            ["carrier"], registry=registry)
        self._carrier_latest: dict[str, int] = {}
        self.feed_silent = Gauge(
            "parcelwatch_carrier_feed_silent",
            "1 while the carrier's feed is silent (its FEED_SILENT firing), 0 once it is back.",
            ["carrier"], registry=registry)
        self.alerts = Counter(
            "parcelwatch_alerts_total", "Alerts emitted by type, status and severity.",
            ["type", "status", "severity"], registry=registry)
        for kind, severities in ALERT_SEVERITIES.items():
            for status in ("FIRING", "RESOLVED"):
                for severity in severities:
                    self.alerts.labels(kind, status, severity)
        self.notifications = Counter(
            "parcelwatch_notifications_total", "Merchant notifications by outcome.",
            ["outcome"], registry=registry)
        for outcome in NOTIFICATION_OUTCOMES:
            self.notifications.labels(outcome)
        self.tracked = Gauge(
            "parcelwatch_parcels_tracked", "Parcels with state held.", registry=registry)
        self.stalled = Gauge(
            "parcelwatch_parcels_stalled", "Parcels with a firing NO_MOVEMENT alert.",
            registry=registry)
        self.watermark = Gauge(
            "parcelwatch_watermark_timestamp_seconds", "Event-time watermark of the job.",
            registry=registry)
        self.watermark_lag = Gauge(
            "parcelwatch_watermark_lag_seconds",
            "Wall clock minus the event-time watermark: negative when event time runs ahead "
            "of the wall clock, NaN until the first watermark.", registry=registry)
        self.webhook_deliveries = Counter(
            "parcelwatch_webhook_deliveries_total",
            "Merchant webhook pushes by outcome (delivered, retry, dead_letter, no_endpoint).",
            ["outcome"], registry=registry)
        for outcome in ("delivered", "retry", "dead_letter", "no_endpoint"):
            self.webhook_deliveries.labels(outcome)  # present from the start, so rate() sees
            # the first failures after a restart too
        self.webhook_seconds = Histogram(
            "parcelwatch_webhook_request_seconds", "Duration of one webhook request.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=registry)
        self.merchant_response = Histogram(
            "parcelwatch_merchant_response_seconds",
            "Event time from an alert under an SLA (sla_alert_types) to its merchant's first "
            "answer (a merchant-actions record).",
            buckets=tuple(h * HOUR_S for h in (1, 2, 4, 8, 12, 24, 48, 72, 168)),
            registry=registry)
        self.consumer_lag = Gauge(
            "parcelwatch_kafka_consumer_lag_records",
            "Records of an input partition not yet read (as of its last fetch).",
            ["topic", "partition"], registry=registry)
        self._shards: dict[str, tuple[int, int, int | None]] = {}
        self._lock = threading.Lock()
        self.tracked.set_function(lambda: self._sum(0))
        self.stalled.set_function(lambda: self._sum(1))
        self.watermark.set_function(self._watermark_seconds)
        self.watermark_lag.set_function(self._lag_seconds)
        self.health = Health(self)

    def report_shard(self, shard: str, tracked: int, stalled: int, watermark: int | None,
                     carrier_latest: dict[str, int] | None = None) -> None:
        with self._lock:
            self._shards[shard] = (tracked, stalled, watermark)
            for carrier, ts in (carrier_latest or {}).items():
                known = self._carrier_latest.get(carrier)
                if known is None:
                    if len(self._carrier_latest) >= MAX_CARRIERS:
                        continue
                    self.carrier_scan_age.labels(carrier).set_function(
                        lambda carrier=carrier: self._scan_age(carrier))
                if known is None or ts > known:
                    self._carrier_latest[carrier] = ts

    def _scan_age(self, carrier: str) -> float:
        watermark = self._watermark_seconds()
        with self._lock:
            latest = self._carrier_latest[carrier] / 1000
        return max(0.0, watermark - latest) if watermark else 0.0

    def report_alert(self, kind: str, status: str, severity: str, carrier: str | None) -> None:
        self.alerts.labels(kind, status, severity).inc()
        if kind == "FEED_SILENT" and carrier is not None:  # carriers are at most 256
            self.feed_silent.labels(carrier).set(1 if status == "FIRING" else 0)

    def report_lag(self, topic: str, partition: int, behind: int) -> None:
        """`topic` is the contract name (scans, disputes, weather): bounded label values."""
        self.consumer_lag.labels(topic, str(partition)).set(behind)

    def _sum(self, field: int) -> float:
        with self._lock:
            return float(sum(values[field] for values in self._shards.values()))

    def _watermark_seconds(self) -> float:
        with self._lock:
            marks = [v[2] for v in self._shards.values() if v[2] is not None]
        return min(marks) / 1000 if marks else 0.0

    def _lag_seconds(self) -> float:
        mark = self._watermark_seconds()
        return time.time() - mark if mark else math.nan


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """The process-wide metrics (the default registry, served by `serve`)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


class Health:
    """What /healthz and /readyz answer: the dataflow runs; it is connected and every input
    partition has reported (a shard knows the watermark), or, for a job without shards, it
    is connected."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.running = False
        self.connected = False
        self.needs_watermark = True

    def live(self) -> tuple[bool, str]:
        return (True, "running") if self.running else (False, "the dataflow is not running")

    def ready(self) -> tuple[bool, str]:
        if not self.running:
            return False, "the dataflow is not running"
        if not self.connected:
            return False, "not connected to the brokers yet"
        if self.needs_watermark and not self.metrics._watermark_seconds():
            return False, "waiting for every input partition to report"
        return True, "ready"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


class _Server(ThreadingWSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def serve(host: str, port: int, served: Metrics) -> None:
    """Serve /metrics, /healthz and /readyz from a background thread."""
    exposition = make_wsgi_app(served.registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            ok, reason = served.health.live() if path == "/healthz" else served.health.ready()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [reason.encode() + b"\n"]
        return exposition(environ, start_response)

    server = make_server(host, port, app, _Server6 if ":" in host else _Server,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="parcelwatch-http", daemon=True).start()

"""Metrics of the contract (section 5) that need no running job: series present from the
start, and each carrier's scan age from what the shards read."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from alerts.metrics import Metrics
from models.events import Scan
from models.settings import MINUTE_MS, Thresholds
from models.shard import MAX_CARRIERS, Shard, ShardInput

T0 = 1_793_462_400_000


def scan(waybill: str, carrier: str, ts: int) -> Scan:
    return Scan(event_id=f"{waybill}-{ts}", waybill=waybill, carrier=carrier,
                scan_type="PICKUP", ts=ts)


def test_every_input_outcome_exists_at_zero_from_the_start():
    registry = CollectorRegistry()
    Metrics(registry)
    for topic in ("scans", "disputes", "weather"):
        for outcome in ("accepted", "duplicate", "rejected", "late"):
            assert registry.get_sample_value(
                "parcelwatch_events_total", {"topic": topic, "outcome": outcome}) == 0


def test_every_alert_type_and_notification_count_exists_at_zero_from_the_start():
    registry = CollectorRegistry()
    Metrics(registry)
    for kind, severity in [("NO_MOVEMENT", "WARNING"), ("SIGNED_DISPUTED", "CRITICAL"),
                           ("ROUTE_DAMAGE_RATE", "WARNING"), ("FEED_SILENT", "CRITICAL"),
                           ("WEATHER_DELAY_CLUSTER", "CRITICAL")]:
        for status in ("FIRING", "RESOLVED"):
            assert registry.get_sample_value("parcelwatch_alerts_total", {
                "type": kind, "status": status, "severity": severity}) == 0
    assert registry.get_sample_value("parcelwatch_notifications_total",
                                     {"outcome": "emitted"}) == 0


def test_watermark_lag_is_signed_and_unknown_before_any_input():
    import math
    import time

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    assert math.isnan(registry.get_sample_value("parcelwatch_watermark_lag_seconds"))
    ahead = round((time.time() + 4 * 86400) * 1000)  # event time 4 days ahead of the clock
    metrics.report_shard("0", 1, 0, ahead)
    assert registry.get_sample_value("parcelwatch_watermark_lag_seconds") < -3.9 * 86400
    metrics.report_shard("0", 1, 0, ahead - 5 * 86400_000)
    assert registry.get_sample_value("parcelwatch_watermark_lag_seconds") > 0.9 * 86400


def test_a_quiet_carrier_shows_its_scan_age_in_event_time():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    one, other = Shard(Thresholds(), ["scans/0"]), Shard(Thresholds(), ["scans/0"])
    one.apply(ShardInput("scans/0", [scan("A", "ZTO", T0), scan("B", "SF", T0)], T0, False))
    later = T0 + 130 * MINUTE_MS
    other.apply(ShardInput("scans/0", [scan("C", "SF", later), scan("C", "SF", later)],
                           later, False))
    for name, shard in (("one", one), ("other", other)):
        metrics.report_shard(name, shard.tracker.tracked, shard.tracker.stalled,
                             other.watermark.value, shard.carrier_latest)
    watermark = other.watermark.value  # 130 min minus the allowed lateness (10)
    age = {c: registry.get_sample_value("parcelwatch_carrier_scan_age_seconds", {"carrier": c})
           for c in ("ZTO", "SF")}
    assert age == {"ZTO": (watermark - T0) / 1000, "SF": 0.0}
    assert age["ZTO"] == 120 * 60


def test_carrier_series_are_bounded():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.report_shard("s", 0, 0, T0, {f"C{i}": T0 for i in range(MAX_CARRIERS + 50)})
    ages = [s for m in registry.collect() if m.name == "parcelwatch_carrier_scan_age_seconds"
            for s in m.samples]
    assert len(ages) == MAX_CARRIERS


def test_a_silent_carrier_feed_reads_1_until_it_is_back():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.report_alert("FEED_SILENT", "FIRING", "CRITICAL", "ZTO")
    assert registry.get_sample_value("parcelwatch_carrier_feed_silent", {"carrier": "ZTO"}) == 1
    assert registry.get_sample_value("parcelwatch_alerts_total", {
        "type": "FEED_SILENT", "status": "FIRING", "severity": "CRITICAL"}) == 1
    metrics.report_alert("FEED_SILENT", "RESOLVED", "CRITICAL", "ZTO")
    assert registry.get_sample_value("parcelwatch_carrier_feed_silent", {"carrier": "ZTO"}) == 0
    metrics.report_alert("NO_MOVEMENT", "FIRING", "WARNING", "ZTO")
    assert registry.get_sample_value("parcelwatch_carrier_feed_silent", {"carrier": "ZTO"}) == 0


def test_readiness_says_what_it_waits_for():
    metrics = Metrics(CollectorRegistry())
    health = metrics.health
    assert health.live() == (False, "the dataflow is not running")
    health.running = True
    assert health.live() == (True, "running")
    assert health.ready() == (False, "not connected to the brokers yet")
    health.connected = True
    assert health.ready() == (False, "waiting for every input partition to report")
    metrics.report_shard("0", 0, 0, T0)
    assert health.ready() == (True, "ready")

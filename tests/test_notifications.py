"""Merchant notifications for NO_MOVEMENT alerts: alerts.notifications.Notifier."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.notifications import Notifier
from alerts.records import Alert, to_alert
from models.events import Scan
from models.settings import HOUR_MS, Thresholds
from models.tracking import ParcelTracker

from conftest import Detections

ACTIONS = ["URGE_CARRIER", "PROACTIVE_DELAY_NOTICE", "OFFER_COUPON"]
# 2024-03-01 20:15 UTC is 2024-03-02 04:15 in Asia/Shanghai (UTC+8).
LAST_SCAN = int(datetime(2024, 3, 1, 20, 15, tzinfo=UTC).timestamp() * 1000)


def scan(event_id: str, waybill: str, ts: int, scan_type: str, **fields) -> Scan:
    return Scan(event_id=event_id, waybill=waybill, carrier="YTO", scan_type=scan_type, ts=ts,
                **fields)


def no_movement_alerts(waybill: str = "YT9000001", merchant_id: str | None = "M-88",
                       last_scan: int = LAST_SCAN) -> tuple[Alert, Alert]:
    """A FIRING and its RESOLVED, from the detector."""
    det = ParcelTracker(Thresholds())
    out = Detections()
    det.on_scan(scan(f"{waybill}-p", waybill, last_scan - 10 * HOUR_MS, "PICKUP",
                     merchant_id=merchant_id, order_id="ORD-5", hub_id="GZ01", city="广州"),
                out)
    det.on_scan(scan(f"{waybill}-a", waybill, last_scan, "ARRIVE", hub_id="WH02", city="武汉"),
                out)
    det.on_watermark(last_scan + 72 * HOUR_MS, out)
    det.on_scan(scan(f"{waybill}-d", waybill, last_scan + 80 * HOUR_MS, "DEPART"), out)
    det.on_watermark(last_scan + 80 * HOUR_MS, out)  # a RESOLVED waits for the watermark
    firing, resolved = (to_alert(d, emitted_at=1_700_000_000_000) for d in out)
    assert (firing.status, resolved.status) == ("FIRING", "RESOLVED")
    return firing, resolved


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_firing_alert_gives_one_notification_with_actions_in_order(locale):
    firing, _ = no_movement_alerts()
    [note] = Notifier(locale=locale).for_alert(firing)
    assert note.locale == locale
    assert note.merchant_id == "M-88"
    assert note.alert_id == firing.alert_id
    assert note.type == "NO_MOVEMENT"
    assert (note.waybill, note.order_id) == ("YT9000001", "ORD-5")
    assert note.event_ts == firing.event_ts
    assert [a.code for a in note.suggested_actions] == ACTIONS
    assert all(a.text for a in note.suggested_actions)
    assert "YT9000001" in note.title
    assert "YT9000001" in note.body and "ORD-5" in note.body
    assert "72" in note.title
    assert "{" not in note.title + note.body  # every placeholder filled


def test_zh_cn_texts_are_chinese_and_name_the_place():
    firing, _ = no_movement_alerts()
    [note] = Notifier().for_alert(firing)  # default locale zh-CN
    assert note.locale == "zh-CN"
    assert "包裹" in note.title
    assert "武汉圆通网点（WH02）" in note.body  # the city and the carrier's own hub
    assert "圆通" in note.suggested_actions[0].text


def test_en_texts_are_english():
    firing, _ = no_movement_alerts()
    [note] = Notifier(locale="en").for_alert(firing)
    assert note.title.startswith("Parcel stalled")
    assert "YTO Express's Wuhan hub (WH02)" in note.body  # romanised, the carrier named
    assert "YTO Express" in note.suggested_actions[0].text


@pytest.mark.parametrize(("locale", "amount", "shown"), [
    ("zh-CN", 8, "8 元"),
    ("en", 8, "8 yuan"),
    ("zh-CN", 12.5, "12.5 元"),
    ("en", 5, "5 yuan"),
])
def test_coupon_amount_from_the_constructor(locale, amount, shown):
    firing, _ = no_movement_alerts()
    [note] = Notifier(locale=locale, coupon_amount=amount).for_alert(firing)
    coupon = note.suggested_actions[-1]
    assert coupon.code == "OFFER_COUPON"
    assert shown in coupon.text


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_time_is_rendered_in_the_configured_zone(locale):
    firing, _ = no_movement_alerts()
    [shanghai] = Notifier(locale=locale).for_alert(firing)  # default Asia/Shanghai
    assert "2024-03-02 04:15 UTC+8" in shanghai.body  # 20:15 UTC + 8 h, the next day
    assert "20:15" not in shanghai.body
    [utc] = Notifier(locale=locale, zone="UTC").for_alert(firing)
    assert "2024-03-01 20:15 UTC+0" in utc.body
    [delhi] = Notifier(locale=locale, zone="Asia/Kolkata").for_alert(firing)
    assert "2024-03-02 01:45 UTC+5:30" in delhi.body


def test_local_time_hour():
    notifier = Notifier()
    ts = int(datetime(2024, 7, 1, 0, 0, tzinfo=UTC).timestamp() * 1000)
    assert notifier.local_time(ts) == "2024-07-01 08:00"
    assert Notifier(zone="Europe/London").local_time(ts) == "2024-07-01 01:00"


def test_notification_id_is_deterministic_and_differs_per_alert():
    first, _ = no_movement_alerts()
    again, _ = no_movement_alerts()
    other, _ = no_movement_alerts(waybill="YT9000002")
    later, _ = no_movement_alerts(last_scan=LAST_SCAN + HOUR_MS)
    ids = [Notifier().for_alert(a)[0].notification_id for a in (first, again, other, later)]
    assert ids[0] == ids[1]
    assert len(set(ids)) == 3
    # The same alert in the other locale is the same notification.
    assert Notifier(locale="en").for_alert(first)[0].notification_id == ids[0]


def test_resolved_alert_gives_no_notification():
    _, resolved = no_movement_alerts()
    assert Notifier().for_alert(resolved) == []
    assert Notifier(locale="en").for_alert(resolved) == []


@pytest.mark.parametrize("merchant_id", [None, ""])
def test_alert_without_merchant_gives_no_notification(merchant_id):
    firing, _ = no_movement_alerts(merchant_id=merchant_id)
    assert firing.merchant_id in {None, ""}
    assert Notifier().for_alert(firing) == []

"""Merchant notifications: one per FIRING alert and affected merchant, with actions to take.

Texts come from `templates.toml` (zh-CN and en), so wording changes are data changes.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from importlib.resources import files
from zoneinfo import ZoneInfo

import msgspec

from alerts.records import Alert
from models.ids import notification_id


class SuggestedAction(msgspec.Struct):
    code: str
    text: str


class MerchantNotification(msgspec.Struct, kw_only=True):
    notification_id: str
    merchant_id: str
    alert_id: str
    type: str
    waybill: str | None
    order_id: str | None
    locale: str
    title: str
    body: str
    suggested_actions: list[SuggestedAction]
    event_ts: int
    # Notifications with the same key may be pushed to the merchant as one digest: all of a
    # merchant's parcels in one delay cluster (or on one route), or a merchant's per-parcel
    # alerts of one type.
    digest_key: str


def load_templates() -> dict:
    return tomllib.loads(files("alerts").joinpath("templates.toml").read_text(encoding="utf-8"))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "-"


class Notifier:
    """Turns alerts into notifications in one locale and time zone."""

    def __init__(self, locale: str = "zh-CN", zone: str = "Asia/Shanghai",
                 coupon_amount: float = 5, reship_risk: float = 0.6, window_days: int = 30):
        self.templates = load_templates()
        self.locale = locale
        self.zone = ZoneInfo(zone)
        self.coupon_amount = coupon_amount
        self.reship_risk = reship_risk
        self.window_days = window_days

    def for_alert(self, alert: Alert, merchants: list[str] | None = None,
                  parcels: list[tuple[str, str, str | None]] | None = None
                  ) -> list[MerchantNotification]:
        """One notification per affected merchant: the alert's own; or, for an alert about
        a route, each of `merchants`; or, for a delay cluster, one per affected parcel in
        `parcels` as (merchant, waybill, order id)."""
        template = self.templates.get(alert.type, {}).get(self.locale)
        if alert.status != "FIRING" or template is None:
            return []
        if parcels:
            recipients = parcels
        elif merchants:
            recipients = [(merchant, None, None) for merchant in merchants]
        elif alert.merchant_id:
            recipients = [(alert.merchant_id, alert.waybill, alert.order_id)]
        else:
            return []
        fields = self._fields(alert)
        actions = [
            SuggestedAction(code, self.templates["actions"][code][self.locale].format_map(fields))
            for code in template["actions"] if self._applies(code, alert.details)
        ]
        about_one_parcel = alert.waybill is not None
        notes = []
        for merchant, waybill, order_id in recipients:
            fields.update(waybill=waybill or "-", order_id=order_id or "-")
            notes.append(MerchantNotification(
                notification_id=notification_id(alert.alert_id, merchant,
                                                waybill if parcels else None),
                merchant_id=merchant,
                alert_id=alert.alert_id,
                type=alert.type,
                waybill=waybill,
                order_id=order_id,
                locale=self.locale,
                title=template["title"].format_map(fields),
                body=template["body"].format_map(fields),
                suggested_actions=actions,
                event_ts=alert.event_ts,
                digest_key=f"{merchant}:{alert.type if about_one_parcel else alert.alert_id}",
            ))
        return notes

    def _applies(self, code: str, details: dict) -> bool:
        """Actions that only make sense with some evidence."""
        if code == "RESHIP":
            return details.get("risk", 0) >= self.reship_risk
        if code == "SWITCH_CARRIER":
            return details.get("better_carrier") is not None
        return True

    def _fields(self, alert: Alert) -> _Blank:
        details = alert.details
        fields = _Blank({k: v for k, v in details.items() if v is not None})
        fields.update(
            waybill=alert.waybill or "-",
            order_id=alert.order_id or "-",
            carrier=alert.carrier or "-",
            coupon_amount=f"{self.coupon_amount:g}",
            place=self._place(details),
        )
        if "dwell_hours" in details:
            fields["dwell_hours"] = f"{details['dwell_hours']:g}"
        if details.get("cause") is not None:
            fields["cause_text"] = self._cause(details)
        for name in ("last_scan", "signed", "dispute", "window_start"):
            if details.get(f"{name}_ts") is not None:
                fields[f"{name}_time"] = self.local_time(details[f"{name}_ts"])
        for name in ("risk", "rate", "rate_low", "rate_high", "threshold"):
            if details.get(name) is not None:
                fields[f"{name}_percent"] = f"{100 * details[name]:.2f}".rstrip("0").rstrip(".")
        if details.get("risk_factors") is not None:
            fields["risk_factors"] = ", ".join(details["risk_factors"]) or "-"
        fields["window_days"] = str(self.window_days)
        return fields

    def _place(self, details: dict) -> str:
        city = details.get("last_city") or details.get("city")
        hub = details.get("last_hub_id") or details.get("hub_id")
        if city and hub:
            return f"{city} ({hub})"
        return city or hub or self.templates["places"]["unknown"][self.locale]

    def _cause(self, details: dict) -> str:
        kind = details.get("weather_kind")
        if kind is not None:
            return self.templates["weather_kinds"][kind][self.locale]
        return self.templates["causes"][details["cause"]][self.locale]

    def local_time(self, ts_ms: int) -> str:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(self.zone).strftime(
            "%Y-%m-%d %H:%M")

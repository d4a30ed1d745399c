"""Merchant notifications: one per FIRING alert and affected merchant, with actions to take.

Texts come from `templates.toml` (zh-CN and en), so wording changes are data changes. They
are written for people: every code an alert carries (carrier, signer, proof, risk factors)
is shown in words, places by city and the carrier's own hub, times with their zone, and
`en` romanises Chinese place names.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from functools import lru_cache
from importlib.resources import files
from zoneinfo import ZoneInfo

import msgspec
from pypinyin import lazy_pinyin

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


@lru_cache(maxsize=4096)
def romanised(name: str) -> str:
    """A Chinese place name in pinyin, as one capitalised word ("武汉" -> "Wuhan")."""
    if all(ord(c) < 0x2E80 for c in name):
        return name
    return "".join(lazy_pinyin(name)).capitalize()


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
        for name in ("origin", "destination", "city", "last_city"):
            if isinstance(fields.get(name), str):
                fields[name] = self._city(fields[name])
        fields.update(
            waybill=alert.waybill or "-",
            order_id=alert.order_id or "-",
            carrier=self._carrier(alert.carrier),
            coupon_amount=f"{self.coupon_amount:g}",
            place=self._place(alert),
        )
        for name in ("dwell_hours", "hours_waiting", "hours_waited"):
            if name in details:
                fields[name] = f"{details[name]:g}"
        if details.get("cause") is not None:
            fields["cause_text"] = self._cause(details)
        for name in ("last_scan", "signed", "dispute", "window_start", "shipped",
                     "promised_delivery"):
            if details.get(f"{name}_ts") is not None:
                fields[f"{name}_time"] = self.zoned_time(details[f"{name}_ts"])
        for name in ("risk", "rate", "rate_low", "rate_high", "threshold"):
            if details.get(name) is not None:
                fields[f"{name}_percent"] = f"{100 * details[name]:.2f}".rstrip("0").rstrip(".")
        for name, table in (("signer", "signers"), ("proof", "proofs")):
            if details.get(name) is not None:
                fields[f"{name}_text"] = self._words(table, details[name])
        fields.update(self._risk(details))
        fields["window_days"] = str(self.window_days)
        return fields

    def _words(self, table: str, code: str) -> str:
        """A code in the locale's words; one the table does not know stays as it is."""
        return self.templates[table].get(code, {}).get(self.locale, code)

    def _carrier(self, code: str | None) -> str:
        return "-" if code is None else self._words("carriers", code)

    def _city(self, name: str) -> str:
        return romanised(name) if self.locale == "en" else name

    def _risk(self, details: dict) -> dict[str, str]:
        """How likely a claim is genuine, in words, and what points to it; nothing at all
        when nothing does (a claim with no factor reads as a plain claim, not as "0%")."""
        factors = details.get("risk_factors") or []
        risk = details.get("risk") or 0
        if not factors or risk <= 0:
            return {"risk_title": "", "risk_sentence": ""}
        levels = self.templates["risk_levels"]
        level = ("high" if risk >= self.reship_risk else
                 "medium" if risk >= self.reship_risk / 2 else "low")
        words = levels["joiner"][self.locale].join(
            self._words("risk_factors", factor) for factor in factors)
        return {"risk_title": levels[level][self.locale],
                "risk_sentence": levels["sentence"][self.locale].format(factors=words)}

    def _place(self, alert: Alert) -> str:
        """The city and the carrier's own hub; for a delay cluster, which holds parcels of
        every carrier, the city alone."""
        details = alert.details
        city = details.get("last_city") or details.get("city")
        city = self._city(city) if city else None
        hub = None if alert.type == "WEATHER_DELAY_CLUSTER" else (
            details.get("last_hub_id") or details.get("hub_id"))
        places = self.templates["places"]
        if hub:
            pattern = places["city_hub" if city else "hub"][self.locale]
            return pattern.format(city=city, hub=hub, carrier=self._carrier(alert.carrier))
        return city or places["unknown"][self.locale]

    def _cause(self, details: dict) -> str:
        kind = details.get("weather_kind")
        if kind is not None:
            return self.templates["weather_kinds"][kind][self.locale]
        return self.templates["causes"][details["cause"]][self.locale]

    def local_time(self, ts_ms: int) -> str:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(self.zone).strftime(
            "%Y-%m-%d %H:%M")

    def zoned_time(self, ts_ms: int) -> str:
        """The local time and its zone as an offset from UTC ("2024-03-02 04:15 UTC+8")."""
        local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(self.zone)
        minutes = round(local.utcoffset().total_seconds() / 60)
        sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
        zone = f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")
        return f"{local:%Y-%m-%d %H:%M} {zone}"

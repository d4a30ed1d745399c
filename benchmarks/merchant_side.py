"""The merchant's side of a generated scenario: shipments and merchant actions, with the
ground truth of PICKUP_OVERDUE, PROMISE_MISSED and DISPUTE_UNANSWERED (contract 0.5).

Its own random stream and ids, so that turning it on leaves every scan and claim of the
scenario as it was. The truth is the contract's definition applied to the generated times,
cut at the scenario's final watermark: a deadline at or before it fires, and a resolution at
or before it resolves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from models.ids import alert_id

HOUR = 3_600_000
DAY = 24 * HOUR
TERMINAL = ("SIGNED", "RETURNED")


@dataclass(frozen=True)
class MerchantConfig:
    shipped_share: float = 0.95        # parcels whose merchant sends a shipment
    late_pickup_rate: float = 0.03     # picked up 25-60 h after the hand-over
    never_picked_up_rate: float = 0.01  # shipments of parcels no carrier ever scans
    promised_share: float = 0.8        # shipments with a promised delivery time
    prompt_answer_rate: float = 0.7    # claims answered within 20 h
    late_answer_rate: float = 0.15     # answered 25-72 h after the claim; the rest never
    pickup_timeout_hours: float = 24
    merchant_response_hours: float = 24


@dataclass
class _Case:
    """A deadline the truth judges: FIRING at `deadline` unless `met_by` <= it; RESOLVED at
    `resolved_at` (None: never)."""

    type: str
    waybill: str
    deadline: int
    resolved_at: int | None


class MerchantSide:
    def __init__(self, config: MerchantConfig, seed: int, emit):
        """`emit(at, topic, key, record, rng=...)`: the scenario's arrival item for a record,
        its delay drawn from `rng`."""
        self.config = config
        self.rng = random.Random(seed * 7919 + 11)
        self.seed = seed
        self.emit = emit
        self.cases: list[_Case] = []
        self.records = 0
        self.max_ts = 0

    def _id(self, kind: str) -> str:
        self.records += 1
        return f"{kind}-{self.seed}-{self.records:09d}"

    def _item(self, ts: int, topic: str, key: str, record: dict) -> tuple:
        self.max_ts = max(self.max_ts, ts)
        return self.emit(ts, topic, key, record, rng=self.rng)

    def for_parcel(self, number: int, carrier: str, waybill: str, merchant: str, order: str,
                   steps: list) -> list[tuple]:
        """The parcel's shipment (the hand-over before its pickup), and a shipment of another
        parcel that is never picked up, sometimes."""
        cfg, rng = self.config, self.rng
        items = []
        pickup = steps[0][1]
        if rng.random() < cfg.shipped_share:
            late = rng.random() < cfg.late_pickup_rate
            lead = rng.randrange(25 * HOUR, 60 * HOUR) if late else rng.randrange(
                HOUR // 2, 20 * HOUR)
            terminal = steps[-1][1] if steps[-1][0] in TERMINAL else None
            items.append(self._shipment(carrier, waybill, merchant, order, pickup - lead,
                                        first_scan=pickup, terminal=terminal))
        if rng.random() < cfg.never_picked_up_rate:
            ghost = f"{carrier}{self.seed:02d}N{number:09d}"
            items.append(self._shipment(carrier, ghost, merchant, f"{order}N",
                                        pickup - rng.randrange(HOUR, 10 * HOUR),
                                        first_scan=None, terminal=None))
        return items

    def _shipment(self, carrier: str, waybill: str, merchant: str, order: str, ts: int,
                  first_scan: int | None, terminal: int | None) -> tuple:
        cfg, rng = self.config, self.rng
        record: dict[str, Any] = {"event_id": self._id("sh"), "waybill": waybill,
                                  "carrier": carrier, "merchant_id": merchant,
                                  "order_id": order, "ts": ts}
        deadline = ts + round(cfg.pickup_timeout_hours * HOUR)
        if first_scan is None or first_scan > deadline:
            self.cases.append(_Case("PICKUP_OVERDUE", waybill, deadline, first_scan))
        if rng.random() < cfg.promised_share:
            promised = ts + rng.randrange(3 * DAY, 6 * DAY)
            record["promised_delivery_ts"] = promised
            if terminal is None or terminal > promised:
                self.cases.append(_Case("PROMISE_MISSED", waybill, promised, terminal))
        return self._item(ts, "shipments", waybill, record)

    def answer(self, waybill: str, merchant: str, claimed_ts: int) -> list[tuple]:
        """The merchant's answer to a SIGNED_DISPUTED raised at `claimed_ts`: prompt, late or
        never; named by the alert's id or by the waybill (with or without the type)."""
        cfg, rng = self.config, self.rng
        draw = rng.random()
        wait = round(cfg.merchant_response_hours * HOUR)
        if draw < cfg.prompt_answer_rate:
            ts = claimed_ts + rng.randrange(10 * 60_000, 20 * HOUR)
        elif draw < cfg.prompt_answer_rate + cfg.late_answer_rate:
            ts = claimed_ts + rng.randrange(wait + HOUR, 72 * HOUR)
        else:
            ts = None
        if ts is None or ts > claimed_ts + wait:
            self.cases.append(_Case("DISPUTE_UNANSWERED", waybill, claimed_ts + wait, ts))
        if ts is None:
            return []
        record: dict[str, Any] = {"event_id": self._id("ma"), "merchant_id": merchant,
                                  "action": rng.choice(["CONTACT_BUYER", "RESHIP",
                                                        "VERIFY_SIGNATURE"]), "ts": ts}
        naming = rng.randrange(3)
        if naming == 0:
            record["alert_id"] = alert_id("SIGNED_DISPUTED", waybill, claimed_ts)
        else:
            record["waybill"] = waybill
            if naming == 1:
                record["alert_type"] = "SIGNED_DISPUTED"
        record["note"] = "已联系买家，电话 138 0013 8000"
        return [self._item(ts, "merchant-actions", merchant, record)]

    def truth(self, watermark: int) -> list[dict]:
        """The alerts the cases raise by the final watermark."""
        alerts = []
        for case in self.cases:
            if case.deadline > watermark:
                continue
            alerts.append({"type": case.type, "status": "FIRING", "waybill": case.waybill,
                           "event_ts": case.deadline})
            if case.resolved_at is not None and case.resolved_at <= watermark:
                alerts.append({"type": case.type, "status": "RESOLVED",
                               "waybill": case.waybill, "event_ts": case.resolved_at})
        return alerts

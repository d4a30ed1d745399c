"""The `alerts` record of the contract (section 3) and its deterministic id."""

from __future__ import annotations

from typing import Any

import msgspec

from models.detection import Detection


class Alert(msgspec.Struct, kw_only=True):
    alert_id: str
    type: str
    status: str
    severity: str
    event_ts: int
    emitted_at: int
    carrier: str | None
    merchant_id: str | None
    order_id: str | None
    waybill: str | None
    details: dict[str, Any]


def to_alert(detection: Detection, emitted_at: int) -> Alert:
    return Alert(
        alert_id=detection.alert_id,
        type=detection.type,
        status=detection.status,
        severity=detection.severity,
        event_ts=detection.event_ts,
        emitted_at=emitted_at,
        carrier=detection.carrier,
        merchant_id=detection.merchant_id,
        order_id=detection.order_id,
        waybill=detection.waybill,
        details=detection.details,
    )

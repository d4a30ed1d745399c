"""What a detector found, before it becomes an alert record (see `alerts.records`)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from models.ids import alert_id

Status = Literal["FIRING", "RESOLVED"]
Severity = Literal["INFO", "WARNING", "CRITICAL"]


class Detection(msgspec.Struct, kw_only=True, frozen=True):
    """A condition that became true (FIRING) or stopped being true (RESOLVED).

    `subject` and `onset_ts` identify the condition: the same pair always yields the same
    `alert_id`, so a RESOLVED matches its FIRING and reruns give the same ids.
    """

    type: str
    status: Status
    severity: Severity
    subject: str
    onset_ts: int
    event_ts: int
    carrier: str | None = None
    merchant_id: str | None = None
    order_id: str | None = None
    waybill: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    # Merchants to notify when the alert is not about one parcel (a route, a cluster).
    notify: list[str] = msgspec.field(default_factory=list)
    # Parcels whose merchants to notify, one notification each: (merchant, waybill, order).
    parcels: list[tuple[str, str, str | None]] = msgspec.field(default_factory=list)

    @property
    def alert_id(self) -> str:
        return alert_id(self.type, self.subject, self.onset_ts)

"""The input records of the contract (section 1), as msgspec structs.

Decoding with these types validates at the same time: a wrong type, a missing field or an
unknown enum value raises `msgspec.ValidationError` with the JSON path, which is the reason
a dead-letter record carries. Unknown extra fields are ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

ScanType = Literal[
    "PICKUP", "DEPART", "ARRIVE", "OUT_FOR_DELIVERY", "DELIVERY_FAILED", "SIGNED",
    "EXCEPTION", "RETURNED",
]
Signer = Literal["RECIPIENT", "PROXY", "LOCKER", "STATION", "UNKNOWN"]
Proof = Literal["PHOTO", "PICKUP_CODE", "SIGNATURE", "NONE"]
ExceptionCode = Literal["WEATHER", "DAMAGED", "LOST", "ADDRESS", "REFUSED", "CUSTOMS", "OTHER"]
DisputeKind = Literal["NOT_RECEIVED", "DAMAGED", "WRONG_ITEM", "MISSING_ITEMS", "OTHER"]
WeatherKind = Literal["RAINSTORM", "TYPHOON", "SNOW", "FOG", "HEAT", "OTHER"]

SCAN_TYPES: tuple[str, ...] = ScanType.__args__
TERMINAL_SCAN_TYPES = frozenset({"SIGNED", "RETURNED"})

EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Waybill = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Carrier = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]
# Up to the year 2100: a larger value is a unit mistake (micro- or nanoseconds), not a time.
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=4_102_444_800_000)]


class Scan(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A courier scan (topic `scans`)."""

    event_id: EventId
    waybill: Waybill
    carrier: Carrier
    scan_type: ScanType
    ts: EpochMs
    hub_id: str | None = None
    city: str | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    origin: str | None = None
    destination: str | None = None
    merchant_id: str | None = None
    order_id: str | None = None
    dest_lat: Latitude | None = None
    dest_lon: Longitude | None = None
    signer: Signer | None = None
    proof: Proof | None = None
    exception_code: ExceptionCode | None = None


class Dispute(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A buyer's after-sales claim (topic `disputes`). `note` may hold personal data."""

    event_id: EventId
    waybill: Waybill
    ts: EpochMs
    kind: DisputeKind
    order_id: str | None = None
    merchant_id: str | None = None
    note: str | None = None


class WeatherWarning(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A weather warning (topic `weather`); it names causes, it does not move event time."""

    event_id: EventId
    kind: WeatherKind
    lat: Latitude
    lon: Longitude
    radius_km: Annotated[float, msgspec.Meta(gt=0)]
    start_ts: EpochMs
    end_ts: EpochMs
    severity: Annotated[int, msgspec.Meta(ge=1, le=4)]


class Shipment(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """The merchant handed a parcel over (topic `shipments`): it exists before its first scan."""

    event_id: EventId
    waybill: Waybill
    carrier: Carrier
    merchant_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    order_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ts: EpochMs
    promised_delivery_ts: EpochMs | None = None


ActionCode = Literal[
    "URGE_CARRIER", "OFFER_COUPON", "PROACTIVE_DELAY_NOTICE", "VERIFY_SIGNATURE",
    "CONTACT_BUYER", "RESHIP", "FILE_CARRIER_CLAIM", "SWITCH_CARRIER", "URGE_PICKUP",
    "ACKNOWLEDGED",
]


class MerchantAction(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """What a merchant did about an alert (topic `merchant-actions`), naming it by
    `alert_id`, or by `waybill` (+ `alert_type`). `note` may hold personal data."""

    event_id: EventId
    merchant_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    action: ActionCode
    ts: EpochMs
    alert_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    waybill: Waybill | None = None
    alert_type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    note: str | None = None


def undecodable_reason(exc: Exception) -> str:
    """The dead-letter reason for a record that failed to decode. Decoding is one msgspec call
    on the record's bytes, so whatever it raises (invalid JSON or schema, invalid UTF-8,
    nesting deeper than the decoder's recursion limit) is about the record, never the job."""
    if isinstance(exc, RecursionError):
        return "nested too deeply to decode (more levels than the decoder's recursion limit)"
    return str(exc) or type(exc).__name__


# gc=False: records hold only scalars and strings, so the collector never needs to walk them.

Event = Scan | Dispute | WeatherWarning | Shipment | MerchantAction

"""Delay onsets, the per-parcel half of WEATHER_DELAY_CLUSTER.

A parcel becomes delayed at an `EXCEPTION` scan with code `WEATHER`, or once it has sat at one
place for `delay_dwell_hours` of event time. "One place" starts with a scan that brings the
parcel somewhere (`PICKUP`, `ARRIVE`, `OUT_FOR_DELIVERY`, or any scan at another hub) and lasts
through scans that do not move it (`EXCEPTION` or `DELIVERY_FAILED` at the same hub). After a
`DEPART` the parcel is in transit: long legs are normal, so no dwell clock runs. The delay ends
when the parcel moves on or its trip ends.

The dwell deadline shares the row's one event-time timer with NO_MOVEMENT (the earlier of the
two), so it fires on the same watermark. A dwell that a newer scan reveals (the parcel scanned
again after more than the dwell, read before the watermark got there) is reported at once,
so what is found never depends on how partitions were interleaved.

Each onset and end goes to the global step, which clusters them (`models.clusters`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from models.events import Scan
from models.parcels import FINISHED, NO_TIME, NO_TIMER, ParcelTable
from models.settings import Thresholds

ARRIVING_TYPES = frozenset({"PICKUP", "ARRIVE", "OUT_FOR_DELIVERY"})


class DelayOnset(NamedTuple):
    """A parcel became delayed at `onset_ts`; it had sat still since `since_ts`."""

    waybill: str
    onset_ts: int
    since_ts: int
    weather: bool              # began with an EXCEPTION/WEATHER scan
    lat: float | None          # where it sits (None: unknown, it cannot be clustered)
    lon: float | None
    hub_id: str | None
    city: str | None
    carrier: str | None
    merchant_id: str | None
    order_id: str | None


class DelayEnd(NamedTuple):
    """The delay that began at `onset_ts` ended at `end_ts` (moved on, finished, or forgotten)."""

    waybill: str
    onset_ts: int
    end_ts: int


class DelayWatch:
    def __init__(self, thresholds: Thresholds, parcels: ParcelTable):
        self.dwell = thresholds.delay_dwell_ms
        self.parcels = parcels
        # Hub code -> last known (lat, lon), for scans that come without a position.
        self.hub_positions: dict[int, tuple[float, float]] = {}

    def on_scan(self, row: int, scan: Scan, out: list) -> None:
        """After the parcel table applied an accepted scan."""
        table = self.parcels
        if table.status[row] == FINISHED:
            self._end(row, max(table.last_ts[row], table.delay_onset[row]), out)
            table.place_since[row] = NO_TIME
            return
        if scan.ts != table.last_ts[row]:
            return  # older than the parcel's latest scan: it moves nothing now
        at = self.deadline(row)
        if at <= scan.ts:  # a dwell this scan reveals, whether or not a watermark saw it
            self._begin(row, at, False, out)
        hub = table.code(scan.hub_id) if scan.hub_id is not None else 0
        has_position = scan.lat is not None and scan.lon is not None
        if has_position and hub:
            self.hub_positions[hub] = (scan.lat, scan.lon)
        if self._moves(row, scan, hub):
            self._end(row, scan.ts, out)
            if scan.scan_type == "DEPART":
                table.place[row], table.place_since[row] = 0, NO_TIME
            else:
                table.place[row], table.place_since[row] = hub, scan.ts
                self._set_position(row, scan, hub, has_position)
        elif has_position and math.isnan(table.lat[row]):
            table.lat[row], table.lon[row] = scan.lat, scan.lon
        if (scan.scan_type == "EXCEPTION" and scan.exception_code == "WEATHER"
                and table.delay_onset[row] == NO_TIME):
            if table.place_since[row] == NO_TIME:  # stopped on the way: here and now
                self._set_position(row, scan, hub, has_position)
            self._begin(row, scan.ts, True, out)
        at = self.deadline(row)
        if at < table.timer[row]:
            table.set_timer(row, at)

    def deadline(self, row: int) -> int:
        """When the parcel will have dwelt long enough (NO_TIMER: no dwell clock runs)."""
        table = self.parcels
        since = table.place_since[row]
        if since == NO_TIME or table.delay_onset[row] != NO_TIME or table.status[row] == FINISHED:
            return NO_TIMER
        return since + self.dwell

    def on_due(self, row: int, watermark: int, out: list) -> None:
        at = self.deadline(row)
        if at <= watermark:
            self._begin(row, at, False, out)

    def on_free(self, row: int, at: int, out: list) -> None:
        """The row is forgotten (stale): whatever delay it had ends for the clusters."""
        self._end(row, max(at, self.parcels.delay_onset[row]), out)

    def _moves(self, row: int, scan: Scan, hub: int) -> bool:
        if scan.scan_type in ARRIVING_TYPES or scan.scan_type == "DEPART":
            return True
        return bool(hub) and hub != self.parcels.place[row]

    def _set_position(self, row: int, scan: Scan, hub: int, has_position: bool) -> None:
        table = self.parcels
        if has_position:
            table.lat[row], table.lon[row] = scan.lat, scan.lon
        else:
            table.lat[row], table.lon[row] = self.hub_positions.get(hub, (math.nan, math.nan))

    def _begin(self, row: int, onset_ts: int, weather: bool, out: list) -> None:
        table = self.parcels
        text = table.text
        table.delay_onset[row] = onset_ts
        since = table.place_since[row]
        lat, lon = table.lat[row], table.lon[row]
        placed = not (math.isnan(lat) or math.isnan(lon))
        out.append(DelayOnset(
            waybill=table.waybill[row], onset_ts=onset_ts,
            since_ts=onset_ts if since == NO_TIME else since, weather=weather,
            lat=round(lat, 5) if placed else None, lon=round(lon, 5) if placed else None,
            hub_id=text(table.place[row]) or text(table.hub[row]), city=text(table.city[row]),
            carrier=text(table.carrier[row]), merchant_id=text(table.merchant[row]),
            order_id=table.order_id[row]))

    def _end(self, row: int, end_ts: int, out: list) -> None:
        table = self.parcels
        onset = table.delay_onset[row]
        if onset != NO_TIME:
            table.delay_onset[row] = NO_TIME
            out.append(DelayEnd(table.waybill[row], onset, end_ts))

"""The per-parcel half of DWELL_ANOMALY, and what every leg's norm is learned from.

Every scan that moves a parcel's trip on (newer than its latest) ends a wait on the leg of
the scan before it (carrier, hub, scan type): the wait is counted by the local day it ended
on, in the leg's log-histogram (`models.lane_norms`), and the counts go to the global step
once an hour of event time. A shard sees a slice of each leg's parcels, so only the global step,
which adds them up, knows a leg's norm, and it judges the silences: once a parcel has
been silent for `lane_min_hours` (the soonest a DWELL_ANOMALY may fire) the shard hands it
the silence as a candidate, and later the scan that ended it. A silence a newer scan
reveals (read before the watermark got to it) goes the same way, both at once.

A scan older than the parcel's latest (read late) ends no wait: waits are told in the order
of event time as the trip moved, not re-cut by a backfill.
"""

from __future__ import annotations

from typing import ClassVar

from models.detectors import Columns, Detector, Prior
from models.events import SCAN_TYPES, Scan
from models.lane_norms import LocalDays, bin_of
from models.messages import DwellCandidate, DwellEnd, LegWaits
from models.parcels import ACTIVE, NO_TIMER, STALLED
from models.settings import HOUR_MS


class DwellWatch(Detector):
    columns: ClassVar[Columns] = {
        "dwell_asked": ("B", 0),  # 1: the current silence went to the global step
    }

    def __init__(self, thresholds, parcels, zone):
        super().__init__(thresholds, parcels, zone)
        self.min_ms = thresholds.lane_min_ms
        self.days = LocalDays(zone)
        # (carrier, hub, scan type codes, day, bin) -> waits, until they are handed over
        self.waits: dict[tuple[int, int, int, int, int], int] = {}
        self.handed_hour = 0  # the hour of event time they were last handed over in

    def on_scan(self, row: int, scan: Scan, hub: int, prior: Prior, out: list) -> None:
        status, last, ts = prior.status, prior.ts, scan.ts
        table = self.parcels
        if (status != ACTIVE and status != STALLED) or ts <= last or table.last_ts[row] != ts:
            return  # the first scan, a finished trip, a late scan, or one past the horizon
        key = (table.carrier[row], prior.hub, prior.scan_type, self.days.day_of(ts),
               bin_of(ts - last))
        waits = self.waits
        waits[key] = waits.get(key, 0) + 1
        if table.dwell_asked[row]:
            table.dwell_asked[row] = 0
        elif ts - last > self.min_ms:  # revealed: the same two messages as in time
            out.append(self._candidate(row, last, prior.scan_type, prior.hub, prior.city))
        else:
            return
        out.append(DwellEnd(table.waybill(row), last, ts, scan.scan_type))

    def deadline(self, row: int) -> int:
        table = self.parcels
        if table.status[row] != ACTIVE or table.dwell_asked[row]:
            return NO_TIMER
        return table.last_ts[row] + self.min_ms

    def on_due(self, row: int, watermark: int, out: list) -> None:
        table = self.parcels
        status = table.status[row]
        if (status in (ACTIVE, STALLED) and not table.dwell_asked[row]
                and table.last_ts[row] + self.min_ms <= watermark):
            table.dwell_asked[row] = 1
            out.append(self._candidate(row, table.last_ts[row], table.last_type[row],
                                       table.hub[row], table.city[row]))

    def on_watermark(self, watermark: int, out: list) -> None:
        """The waits counted so far, once an hour of event time: a leg's waits add up in
        one count, and the global step needs a day's only by the next midnight (they are
        handed over, in the shard's output, before its watermark passes it)."""
        hour = watermark // HOUR_MS
        if hour > self.handed_hour:
            self.handed_hour = hour
            self._hand_over(out)

    def flush(self, out: list) -> None:
        self._hand_over(out)

    def _hand_over(self, out: list) -> None:
        """One message per day the waits ended on."""
        if not self.waits:
            return
        text = self.parcels.text
        by_day: dict[int, dict] = {}
        names: dict[tuple[int, int, int], tuple] = {}  # each leg named once
        for (carrier, hub, scan_type, day, b), n in self.waits.items():
            codes = (carrier, hub, scan_type)
            leg = names.get(codes)
            if leg is None:
                leg = names[codes] = (text(carrier), text(hub), SCAN_TYPES[scan_type])
            legs = by_day.get(day)
            if legs is None:
                legs = by_day[day] = {}
            bins = legs.get(leg)
            if bins is None:
                bins = legs[leg] = {}
            bins[b] = bins.get(b, 0) + n
        self.waits = {}
        for day in sorted(by_day):
            out.append(LegWaits(self.days.start_of(day), day, by_day[day]))

    def _candidate(self, row: int, last_ts: int, scan_type: int, hub: int, city: int,
                   ) -> DwellCandidate:
        table = self.parcels
        text = table.text
        return DwellCandidate(
            due_at=last_ts + self.min_ms, waybill=table.waybill(row), last_scan_ts=last_ts,
            scan_type=SCAN_TYPES[scan_type], hub_id=text(hub), city=text(city),
            carrier=text(table.carrier[row]), merchant_id=text(table.merchant[row]),
            order_id=table.order_id(row), origin=text(table.origin[row]),
            destination=text(table.destination[row]))

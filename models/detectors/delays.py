"""Delay onsets, the per-parcel half of WEATHER_DELAY_CLUSTER.

A parcel becomes delayed at an `EXCEPTION` scan with code `WEATHER`, or once it has sat at one
place for `delay_dwell_hours` of event time. "One place" starts with a scan that brings the
parcel somewhere (`PICKUP`, `ARRIVE`, `OUT_FOR_DELIVERY`, or any scan at another hub) and lasts
through scans that do not move it (`EXCEPTION` or `DELIVERY_FAILED` at the same hub). After a
`DEPART` the parcel is in transit: long legs are normal, so no dwell clock runs. The delay ends
when the parcel moves on or its trip ends.

The dwell deadline shares the row's one event-time timer with the other detectors (the
earliest wins), so it fires on the same watermark. A dwell that a newer scan reveals (the
parcel scanned again after more than the dwell, read before the watermark got there) counts
too; it is held until the watermark passes its onset, like NO_MOVEMENT's pending silences,
because a scan from inside it may still arrive within the allowed lateness. So what is found
never depends on how partitions were interleaved.

Each onset and end goes to the global step, which clusters them (`models.clusters`).
"""

from __future__ import annotations

import math
from typing import ClassVar

from models.clusters import GRID_DEGREES
from models.detectors import Columns, Detector, Prior
from models.events import SCAN_TYPES, Scan
from models.messages import DelayEnd, DelayOnset, PlaceVisits
from models.parcels import FINISHED, NAN, NO_TIME, NO_TIMER, SCAN_TYPE_CODE

ARRIVING_TYPES = frozenset({"PICKUP", "ARRIVE", "OUT_FOR_DELIVERY"})


class Revealed:
    """A dwell a newer scan revealed, held until the watermark passes its onset: a scan from
    inside it may still arrive within the allowed lateness and show the parcel moved."""

    __slots__ = ("end_ts", "onset", "place")

    def __init__(self, onset: DelayOnset, place: int):
        self.onset = onset
        self.place = place              # hub code of the place it sat at
        self.end_ts: int | None = None  # when it moved on (None: it is the current delay)


class Ending:
    """A delay end held until the watermark passes it: a scan from between the onset and
    that end may still arrive within the allowed lateness and show the parcel moved sooner."""

    __slots__ = ("end", "place")

    def __init__(self, end: DelayEnd, place: int):
        self.end = end
        self.place = place  # hub code of the place the parcel sat at


class DelayWatch(Detector):
    columns: ClassVar[Columns] = {
        "place": ("I", 0),             # hub code of the current place (0: unknown, in transit)
        "place_since": ("q", NO_TIME),
        "place_type": ("B", 0),         # scan type code of the scan that brought it there
        "delay_onset": ("q", NO_TIME),  # when its current delay began
        "lat": ("f", NAN),              # where it is (shared with signing, which keeps where
        "lon": ("f", NAN),              # it was signed)
    }

    def __init__(self, thresholds, parcels, zone):
        super().__init__(thresholds, parcels, zone)
        self.dwell = thresholds.delay_dwell_ms
        # Hub code -> known (lat, lon) and city code, for scans that come without them.
        self.hub_positions: dict[int, tuple[float, float]] = {}
        self.hub_cities: dict[int, int] = {}
        self.revealed: dict[int, Revealed] = {}   # row -> its held dwell
        self.ending: dict[int, Ending] = {}       # row -> its held delay end
        self.interval = thresholds.cluster_interval_ms
        # (interval, grid cell) -> parcels that arrived there, until the next watermark
        self.visits: dict[tuple[int, int, int], int] = {}

    def on_scan(self, row: int, scan: Scan, hub: int, prior: Prior, out: list) -> None:
        table = self.parcels
        held = self.revealed.get(row)
        if scan.ts < table.last_ts[row]:
            held = self._on_late_scan(row, held, scan, hub)
        if table.status[row] == FINISHED:
            # It may have sat too long before the scan that ends the trip: a dwell it reveals.
            at = self._place_deadline(row)
            if at < table.last_ts[row]:
                self._reveal(row, at, held, out)
            self._end(row, table.last_ts[row], out)
            table.place_since[row] = NO_TIME
            return
        if scan.ts != table.last_ts[row]:
            return  # older than the parcel's latest scan: it moves nothing now
        has_position = scan.lat is not None and scan.lon is not None
        if hub and hub not in self.hub_positions and has_position:  # hubs do not move
            self.hub_positions[hub] = (scan.lat, scan.lon)
        if hub and hub not in self.hub_cities and scan.city is not None:
            self.hub_cities[hub] = table.code(scan.city)
        at = self._dwell_deadline(row)
        # A dwell this scan reveals: held until the watermark passes it. A scan exactly at
        # the deadline is read before the watermark gets there: it ends the dwell in time.
        if at < scan.ts:
            self._reveal(row, at, held, out)
        if self._moves(table.place[row], scan, hub):
            self._end(row, scan.ts, out)
            if scan.scan_type == "DEPART":
                table.place[row], table.place_since[row] = 0, NO_TIME
            else:
                table.place[row], table.place_since[row] = hub, scan.ts
                table.place_type[row] = SCAN_TYPE_CODE[scan.scan_type]
                self._set_position(row, scan, hub, has_position)
                self._count_visit(row, scan.ts)
        elif has_position and math.isnan(table.lat[row]):
            table.lat[row], table.lon[row] = scan.lat, scan.lon
        if (scan.scan_type == "EXCEPTION" and scan.exception_code == "WEATHER"
                and table.delay_onset[row] == NO_TIME):
            if table.place_since[row] == NO_TIME:  # stopped on the way: here and now
                self._set_position(row, scan, hub, has_position)
            self._begin(row, scan.ts, True, out)

    def _on_late_scan(self, row: int, held: Revealed | None, scan: Scan, hub: int,
                      ) -> Revealed | None:
        """A scan older than the parcel's latest, read late: if it moved the parcel during a
        held dwell or delay, that dwell never was one, or that delay ended sooner; the same
        as if it had been read in time. Returns the held dwell that remains."""
        if held is not None and self._moves(held.place, scan, hub):
            if held.onset.since_ts < scan.ts <= held.onset.onset_ts:
                self._cancel(row, held)  # it moved on before it dwelt long enough
                return None
            if held.end_ts is not None and held.onset.onset_ts < scan.ts < held.end_ts:
                held.end_ts = scan.ts
        ending = self.ending.get(row)
        if (ending is not None and ending.end.onset_ts < scan.ts < ending.end.end_ts
                and self._moves(ending.place, scan, hub)):
            ending.end = ending.end._replace(end_ts=scan.ts)
        return held

    def _arm(self, row: int) -> None:
        """Bring the row's shared timer forward to this side's deadline if it is sooner."""
        self.parcels.bring_forward(row, self.deadline(row))

    def _reveal(self, row: int, at: int, held: Revealed | None, out: list) -> None:
        """A dwell the scan just read reveals: held until the watermark passes `at`."""
        if held is not None and row in self.revealed:  # a second one: the first is older
            self._release(row, held, out)
        self.revealed[row] = Revealed(self._onset(row, at, False), self.parcels.place[row])
        self.parcels.delay_onset[row] = at

    def deadline(self, row: int) -> int:
        """The row's next delay deadline: a held dwell's onset, or when the parcel will have
        dwelt long enough (NO_TIMER: neither)."""
        held = self.revealed.get(row)
        at = self._dwell_deadline(row)
        if held is not None:
            at = min(at, held.onset.onset_ts)
        ending = self.ending.get(row)
        return at if ending is None else min(at, ending.end.end_ts)

    def _dwell_deadline(self, row: int) -> int:
        if self.parcels.status[row] == FINISHED:
            return NO_TIMER
        return self._place_deadline(row)

    def _place_deadline(self, row: int) -> int:
        """When the parcel will have sat at its place long enough (NO_TIMER: no place, or
        already delayed there)."""
        table = self.parcels
        since = table.place_since[row]
        if since == NO_TIME or table.delay_onset[row] != NO_TIME:
            return NO_TIMER
        return since + self.dwell

    def on_due(self, row: int, watermark: int, out: list) -> None:
        held = self.revealed.get(row)
        if held is not None and held.onset.onset_ts <= watermark:
            self._release(row, held, out)
        ending = self.ending.get(row)
        if ending is not None and ending.end.end_ts <= watermark:
            del self.ending[row]
            out.append(ending.end)
        at = self._dwell_deadline(row)
        if at <= watermark:
            self._begin(row, at, False, out)

    def _count_visit(self, row: int, ts: int) -> None:
        lat, lon = self.parcels.lat[row], self.parcels.lon[row]
        if lat == lat:  # not NaN
            key = (ts // self.interval, round(lat / GRID_DEGREES), round(lon / GRID_DEGREES))
            self.visits[key] = self.visits.get(key, 0) + 1

    def on_watermark(self, watermark: int, out: list) -> None:
        """The arrivals counted since the last watermark, one message per interval."""
        if not self.visits:
            return
        by_interval: dict[int, dict] = {}
        for (interval, lat, lon), n in self.visits.items():
            by_interval.setdefault(interval, {})[lat, lon] = n
        self.visits = {}
        for interval in sorted(by_interval):
            out.append(PlaceVisits((interval + 1) * self.interval, by_interval[interval]))

    def flush(self, out: list) -> None:
        """Every input is caught up: nothing can show a held dwell was not one."""
        for row, held in list(self.revealed.items()):
            self._release(row, held, out)
        out.extend(ending.end for ending in self.ending.values())
        self.ending.clear()

    def on_free(self, row: int, at: int, out: list) -> None:
        """The row is forgotten (stale): whatever delay it had ends for the clusters."""
        held = self.revealed.get(row)
        if held is not None:
            self._release(row, held, out)
        self._end(row, at, out)
        ending = self.ending.pop(row, None)
        if ending is not None:
            out.append(ending.end)

    @staticmethod
    def _moves(place: int, scan: Scan, hub: int) -> bool:
        if scan.scan_type in ARRIVING_TYPES or scan.scan_type == "DEPART":
            return True
        return bool(hub) and hub != place

    def _set_position(self, row: int, scan: Scan, hub: int, has_position: bool) -> None:
        table = self.parcels
        if has_position:
            table.lat[row], table.lon[row] = scan.lat, scan.lon
        else:
            table.lat[row], table.lon[row] = self.hub_positions.get(hub, (math.nan, math.nan))

    def _onset(self, row: int, onset_ts: int, weather: bool) -> DelayOnset:
        """The delay of the parcel at its current place."""
        table = self.parcels
        text = table.text
        since = table.place_since[row]
        lat, lon = table.lat[row], table.lon[row]
        placed = not (math.isnan(lat) or math.isnan(lon))
        place = table.place[row]
        city = self.hub_cities.get(place, table.city[row]) if place else table.city[row]
        return DelayOnset(
            waybill=table.waybill(row), onset_ts=onset_ts,
            since_ts=onset_ts if since == NO_TIME else since, weather=weather,
            lat=round(lat, 5) if placed else None, lon=round(lon, 5) if placed else None,
            hub_id=text(place) or text(table.hub[row]), city=text(city),
            carrier=text(table.carrier[row]), merchant_id=text(table.merchant[row]),
            order_id=table.order_id(row),
            scan_type=SCAN_TYPES[table.place_type[row]] if place else None)

    def _begin(self, row: int, onset_ts: int, weather: bool, out: list) -> None:
        self.parcels.delay_onset[row] = onset_ts
        out.append(self._onset(row, onset_ts, weather))

    def _release(self, row: int, held: Revealed, out: list) -> None:
        del self.revealed[row]
        out.append(held.onset)
        if held.end_ts is not None:
            self._hold_end(row, DelayEnd(held.onset.waybill, held.onset.onset_ts,
                                         held.end_ts), held.place, out)

    def _cancel(self, row: int, held: Revealed) -> None:
        del self.revealed[row]
        if held.end_ts is None:  # it was the current delay: there is none now
            self.parcels.delay_onset[row] = NO_TIME

    def _end(self, row: int, end_ts: int, out: list) -> None:
        """The delay ends (never before it began); a held one keeps its end until released."""
        table = self.parcels
        onset = table.delay_onset[row]
        if onset == NO_TIME:
            return
        table.delay_onset[row] = NO_TIME
        held = self.revealed.get(row)
        if held is not None and held.end_ts is None:
            held.end_ts = max(end_ts, onset)
        else:
            self._hold_end(row, DelayEnd(table.waybill(row), onset, max(end_ts, onset)),
                           table.place[row], out)

    def _hold_end(self, row: int, end: DelayEnd, place: int, out: list) -> None:
        """Hold a delay's end until the watermark passes it; an older one held for the row
        is certain by now (the parcel dwelt again since)."""
        older = self.ending.get(row)
        if older is not None:
            out.append(older.end)
        self.ending[row] = Ending(end, place)
        self._arm(row)

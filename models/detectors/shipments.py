"""PICKUP_OVERDUE and PROMISE_MISSED: the merchant's side of a parcel (`shipments`, 0.5).

A shipment says a parcel exists from the merchant's hand-over, before any scan. Both
questions are judged when the watermark passes their deadline, so by then every scan up to
it has been read and the read order of the two inputs never changes the answer:

- PICKUP_OVERDUE: no scan of the waybill at or before shipment ts + `pickup_timeout_hours`
  (24 h). It resolves at the first scan, once the watermark has passed that scan.
- PROMISE_MISSED: no terminal scan at or before `promised_delivery_ts`. It resolves at the
  terminal scan (the earliest, as the trip records it), once the watermark has passed it.
  Its details name the parcel's last scan by the promised time; a shipment read only after
  later scans of its parcel (no history is kept) names none.

Before its first scan a shipment waits in a side dict by waybill (hours, for most); from
the first scan on, its promise lives in the parcel's row (columns below), so an in-flight
parcel costs nine bytes more, not an object. A second shipment of a waybill changes
nothing. A shipment read late (below the watermark) whose deadline is already behind it is
judged `allowed_lateness` after where the watermark stood, like a late scan's deadline.
"""

from __future__ import annotations

import heapq
from typing import ClassVar, NamedTuple

from models.detection import Detection
from models.detectors import Columns, Detector, Prior
from models.events import SCAN_TYPES, Scan, Shipment
from models.parcels import FINISHED, FREE, NO_TIMER, SCAN_TYPE_CODE
from models.settings import DAY_MS, HOUR_MS

PICKUP_OVERDUE = "PICKUP_OVERDUE"
PROMISE_MISSED = "PROMISE_MISSED"

# The `promise` column: what is known of the parcel's shipment and promise.
SHIPPED = 1      # a shipment of the waybill was read
WAITING = 2      # its promise is still to be judged
MISSED = 4       # PROMISE_MISSED fired; it resolves at the terminal scan
# What a queued question asks, of the waybill it names.
PICKUP, PICKED_UP, PROMISE = range(3)


class LastScan(NamedTuple):
    """The parcel's last scan at or before its promised time, once a later one was read."""

    ts: int
    scan_type: int
    hub: int
    city: int


class Waiting(NamedTuple):
    """A shipment whose parcel has not been scanned yet."""

    shipment: Shipment
    hold: int = 0                  # its deadlines are judged no sooner (read late)
    promise_missed: bool = False   # PROMISE_MISSED fired before any scan


class ShipmentWatch(Detector):
    columns: ClassVar[Columns] = {
        "promised": ("q", NO_TIMER),  # the promised delivery ts, while it is judged or missed
        "first_ts": ("q", 0),         # the parcel's earliest scan ts
        "promise": ("B", 0),          # SHIPPED | WAITING | MISSED
    }
    records = (Shipment,)

    def __init__(self, thresholds, parcels, zone):
        super().__init__(thresholds, parcels, zone)
        self.timeout = thresholds.pickup_timeout_ms
        self.lateness = thresholds.lateness_ms
        self.expire_after = thresholds.stale_after_ms
        self.pruned_day: int | None = None
        self.waiting: dict[str, Waiting] = {}      # waybill -> its shipment, before a scan
        self.overdue: dict[str, Shipment] = {}     # waybill -> shipment whose pickup fired
        # (judged at, seq, what, waybill, deadline, shipment): questions about waybills
        self.queue: list[tuple[int, int, int, str, int, Shipment]] = []
        self.seq = 0
        self.hold: dict[int, int] = {}             # row -> its promise judged no sooner
        self.before_promise: dict[int, LastScan] = {}  # row -> its last scan before it
        self.watermark: int | None = None

    # -- shipments -----------------------------------------------------------------------

    def on_record(self, shipment: Shipment, out: list, settled: int | None = None) -> bool:
        table = self.parcels
        waybill = shipment.waybill
        row = table.find(waybill)
        if waybill in self.waiting or (row >= 0 and table.promise[row] & SHIPPED):
            return True
        hold = self._hold_for(shipment, settled)
        deadline = shipment.ts + self.timeout
        self._ask(max(deadline, hold), PICKUP, waybill, deadline, shipment)
        if row >= 0:
            self._on_row(row, Waiting(shipment, hold))
        else:
            self.waiting[waybill] = Waiting(shipment, hold)
        return False

    def _hold_for(self, shipment: Shipment, settled: int | None) -> int:
        """A late shipment's deadlines wait for the backfill around it, from where the
        reading stood (0: not late)."""
        watermark = self.watermark
        if watermark is not None and shipment.ts < watermark:
            return max(watermark, settled or watermark) + self.lateness
        return 0

    def _ask(self, at: int, what: int, waybill: str, deadline: int,
             shipment: Shipment) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, what, waybill, deadline, shipment))

    def _on_row(self, row: int, waiting: Waiting) -> None:
        """The shipment is now the parcel's: merchant and order where the scans lack them,
        the promise in the row."""
        table, shipment = self.parcels, waiting.shipment
        if not table.merchant[row]:
            table.merchant[row] = table.code(shipment.merchant_id)
        if table.order_id(row) is None:
            table.order_ids.set(row, shipment.order_id)
        if not table.carrier[row]:
            table.carrier[row] = table.code(shipment.carrier)
        state = SHIPPED
        promised = shipment.promised_delivery_ts
        if promised is not None:
            table.promised[row] = promised
            state |= MISSED if waiting.promise_missed else WAITING
            if waiting.hold:
                self.hold[row] = waiting.hold
        table.promise[row] = state
        if state != SHIPPED:
            table.bring_forward(row, self.deadline(row))

    # -- scans ---------------------------------------------------------------------------

    def on_scan(self, row: int, scan: Scan, hub: int, prior: Prior, out: list) -> None:
        table = self.parcels
        if table.promise[row] & WAITING:
            self._note_before_promise(row, scan, hub, prior)
        if prior.status == FREE:
            table.first_ts[row] = scan.ts
            if self.waiting:
                waiting = self.waiting.pop(scan.waybill, None)
                if waiting is not None:
                    self._on_row(row, waiting)
            if self.overdue and scan.waybill in self.overdue:
                shipment = self.overdue[scan.waybill]
                self._ask(scan.ts, PICKED_UP, scan.waybill, 0, shipment)
        elif scan.ts < table.first_ts[row]:
            table.first_ts[row] = scan.ts

    def _note_before_promise(self, row: int, scan: Scan, hub: int, prior: Prior) -> None:
        """What a missed promise reports is the last scan by the promised time, whatever
        was read after it: kept when a scan past the promise comes."""
        table = self.parcels
        promised, before = table.promised[row], self.before_promise.get(row)
        if scan.ts <= promised:
            if before is not None and scan.ts > before.ts:  # read late, from before it
                self.before_promise[row] = LastScan(scan.ts, SCAN_TYPE_CODE[scan.scan_type], hub,
                                                    table.code(scan.city))
        elif before is None and prior.status != FREE and prior.ts <= promised:
            self.before_promise[row] = LastScan(*prior[1:])

    # -- event time ----------------------------------------------------------------------

    def deadline(self, row: int) -> int:
        table = self.parcels
        state = table.promise[row]
        if state & WAITING:
            return max(table.promised[row], self.hold.get(row, 0))
        if state & MISSED and table.status[row] == FINISHED:
            return table.last_ts[row]
        return NO_TIMER

    def on_due(self, row: int, watermark: int, out: list) -> None:
        table = self.parcels
        state = table.promise[row]
        if state & WAITING:
            promised = table.promised[row]
            if max(promised, self.hold.get(row, 0)) > watermark:
                return
            self.hold.pop(row, None)
            if table.status[row] == FINISHED and table.last_ts[row] <= promised:
                table.promise[row] = SHIPPED  # delivered as promised
                self.before_promise.pop(row, None)
                return
            out.append(self._promise(row, "FIRING", promised))
            table.promise[row] = state = SHIPPED | MISSED
        if state & MISSED and table.status[row] == FINISHED and table.last_ts[row] <= watermark:
            out.append(self._promise(row, "RESOLVED", table.last_ts[row]))
            table.promise[row] = SHIPPED
            self.before_promise.pop(row, None)

    def on_watermark(self, watermark: int, out: list) -> None:
        self.watermark = watermark
        day = watermark // DAY_MS
        if day != self.pruned_day:  # once a day: forget shipments never scanned
            self.pruned_day = day
            horizon = watermark - self.expire_after
            for waybill in [w for w, waiting in self.waiting.items()
                            if waiting.shipment.ts < horizon]:
                del self.waiting[waybill]
                self.overdue.pop(waybill, None)
        queue = self.queue
        while queue and queue[0][0] <= watermark:
            _, _, what, waybill, deadline, shipment = heapq.heappop(queue)
            self._answer(what, waybill, deadline, shipment, watermark, out)

    def _answer(self, what: int, waybill: str, deadline: int, shipment: Shipment,
                watermark: int, out: list) -> None:
        table = self.parcels
        row = table.find(waybill)
        if what == PICKUP:
            if row >= 0 and table.first_ts[row] <= deadline:
                return  # picked up in time
            out.append(self._pickup(shipment, "FIRING", deadline))
            if row >= 0:  # scanned, but only after the deadline
                self._ask(table.first_ts[row], PICKED_UP, waybill, 0, shipment)
                return
            self.overdue[waybill] = shipment
            waiting = self.waiting.get(waybill)
            promised = shipment.promised_delivery_ts
            if waiting is not None and promised is not None:  # the promise waits here too
                self._ask(max(promised, waiting.hold), PROMISE, waybill, promised, shipment)
        elif what == PICKED_UP:
            self.overdue.pop(waybill, None)
            if row >= 0:  # (else scanned and forgotten already: nothing to resolve)
                out.append(self._pickup(shipment, "RESOLVED", table.first_ts[row]))
        elif what == PROMISE:
            waiting = self.waiting.get(waybill)
            if waiting is not None and not waiting.promise_missed:  # still not scanned
                out.append(self._promise_of(shipment, "FIRING", deadline))
                self.waiting[waybill] = waiting._replace(promise_missed=True)

    def on_free(self, row: int, gone_at: int, out: list) -> None:
        self.hold.pop(row, None)
        self.before_promise.pop(row, None)

    def flush(self, out: list) -> None:
        """Every input is caught up: held questions are judged at the watermark now."""
        watermark = self.watermark
        if watermark is None:
            return
        while True:  # what a held question asks in turn (a promise after a pickup) too
            held = [entry for entry in self.queue if entry[0] <= watermark
                    or (entry[2] != PICKED_UP and entry[4] <= watermark)]
            if not held:
                break
            seqs = {entry[1] for entry in held}
            self.queue = [entry for entry in self.queue if entry[1] not in seqs]
            heapq.heapify(self.queue)
            for _, _, what, waybill, deadline, shipment in sorted(held):
                self._answer(what, waybill, deadline, shipment, watermark, out)
        for row in list(self.hold):
            del self.hold[row]
            self.parcels.bring_forward(row, self.deadline(row))

    # -- alerts --------------------------------------------------------------------------

    @staticmethod
    def _pickup(shipment: Shipment, status: str, event_ts: int) -> Detection:
        return Detection(
            type=PICKUP_OVERDUE, status=status, severity="WARNING", subject=shipment.waybill,
            onset_ts=shipment.ts, event_ts=event_ts, carrier=shipment.carrier,
            merchant_id=shipment.merchant_id, order_id=shipment.order_id,
            waybill=shipment.waybill,
            details={"shipped_ts": shipment.ts,
                     "hours_waiting": round((event_ts - shipment.ts) / HOUR_MS, 2)})

    def _promise_of(self, shipment: Shipment, status: str, event_ts: int) -> Detection:
        """PROMISE_MISSED of a parcel never scanned."""
        return Detection(
            type=PROMISE_MISSED, status=status, severity="WARNING", subject=shipment.waybill,
            onset_ts=shipment.promised_delivery_ts, event_ts=event_ts,
            carrier=shipment.carrier, merchant_id=shipment.merchant_id,
            order_id=shipment.order_id, waybill=shipment.waybill,
            details={"promised_delivery_ts": shipment.promised_delivery_ts,
                     "last_scan_type": None, "last_scan_ts": None, "last_city": None,
                     "last_hub_id": None})

    def _promise(self, row: int, status: str, event_ts: int) -> Detection:
        """PROMISE_MISSED of a scanned parcel, with its last scan by the promised time (none:
        every scan came after it)."""
        table = self.parcels
        promised = table.promised[row]
        last = self.before_promise.get(row)
        if last is None and table.last_ts[row] <= promised:
            last = LastScan(table.last_ts[row], table.last_type[row], table.hub[row],
                            table.city[row])
        return Detection(
            type=PROMISE_MISSED, status=status, severity="WARNING",
            subject=table.waybill(row), onset_ts=promised, event_ts=event_ts,
            carrier=table.text(table.carrier[row]), merchant_id=table.text(table.merchant[row]),
            order_id=table.order_id(row), waybill=table.waybill(row),
            details={"promised_delivery_ts": promised,
                     "last_scan_type": None if last is None else SCAN_TYPES[last.scan_type],
                     "last_scan_ts": None if last is None else last.ts,
                     "last_city": None if last is None else table.text(last.city),
                     "last_hub_id": None if last is None else table.text(last.hub)})

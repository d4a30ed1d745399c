"""The parcel's trip, kept once for every per-parcel detector of a shard.

For each scan the tracker looks the waybill up once, drops a repeated event id, records the
route and the latest scan, moves the trip's status (a terminal scan finishes it, a newer scan
revives a stalled one) and then hands the scan to each detector (`models.detectors`) with the
row as it was before. Each row has one event-time timer: the earliest of the trip's own
deadline (forget a finished or stalled parcel) and every detector's. When the watermark
passes it, every detector sees the row due; a row no detector keeps is freed once its trip's
retention has passed, and its waybill is remembered as forgotten, so a late scan does not start
tracking it again.

Late scans (older than the watermark when read: a carrier's backfill) are applied like any
other, but a deadline one of them leaves behind the watermark is not judged at once: the row
is held until the watermark has moved `allowed_lateness` past where it stood when the scan
was read, so the rest of the backfill can land first (contract section 2). A batch is read as
one, and where the reading stood is its most advanced partition (the shard says where), so
how a backfill is split into batches and partitions does not change what is judged. Once
every input is caught up nothing more can come, and held rows are judged.
"""

from __future__ import annotations

from models.detectors import Detector, Prior
from models.detectors.delays import DelayWatch
from models.detectors.dwell import DwellWatch
from models.detectors.merchant_actions import MerchantActionRelay
from models.detectors.no_movement import NoMovementDetector
from models.detectors.shipments import ShipmentWatch
from models.detectors.signing import DisputeMatcher
from models.events import TERMINAL_SCAN_TYPES, Scan, Shipment
from models.forgotten import ForgottenWaybills
from models.parcels import ACTIVE, FINISHED, FREE, NO_TIMER, SCAN_TYPE_CODE, STALLED, ParcelTable
from models.settings import Thresholds

# Every per-parcel detector, in the order each sees a scan or a due row.
DETECTORS: tuple[type[Detector], ...] = (NoMovementDetector, DwellWatch, DelayWatch,
                                         DisputeMatcher, ShipmentWatch, MerchantActionRelay)

# What `on_scan` returns instead of a row.
DUPLICATE = -1   # a repeated event id: nothing changed
UNTRACKED = -2   # accepted, but about a parcel no longer tracked (finished and forgotten)
NEW = Prior(FREE, 0, 0, 0, 0)


class ParcelTracker:
    def __init__(self, thresholds: Thresholds, zone: str = "Asia/Shanghai",
                 detectors: tuple[type[Detector], ...] = DETECTORS):
        columns: dict = {}
        for kind in detectors:
            columns.update(kind.columns)
        self.parcels = ParcelTable(columns)
        self.detectors = [kind(thresholds, self.parcels, zone) for kind in detectors]
        self._bind_hooks()
        self.stale_after = thresholds.stale_after_ms
        self.retention = max(thresholds.finished_retention_ms,
                             *(d.keep_finished_ms for d in self.detectors))
        self.forgotten = ForgottenWaybills(thresholds.forget_after_ms)
        self.lateness = thresholds.lateness_ms
        self.held: dict[int, int] = {}   # row -> judged no sooner than this watermark

    def _bind_hooks(self) -> None:
        """Per hook, only the detectors that implement it: a scan costs no call for a hook a
        detector left at its default."""
        self.on_scans = _implementing(self.detectors, "on_scan")
        self.deadlines = _implementing(self.detectors, "deadline")
        self.on_dues = _implementing(self.detectors, "on_due")
        self.keepers = _implementing(self.detectors, "keeps")
        self.on_frees = _implementing(self.detectors, "on_free")
        self.handlers = {record: d.on_record for d in self.detectors for record in d.records}

    def __getstate__(self) -> dict:
        bound = ("on_scans", "deadlines", "on_dues", "keepers", "on_frees", "handlers")
        return {k: v for k, v in self.__dict__.items() if k not in bound}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_hooks()

    def detector(self, kind: type[Detector]) -> Detector:
        return next(d for d in self.detectors if type(d) is kind)

    # -- records -------------------------------------------------------------------------

    def on_scan(self, scan: Scan, out: list, watermark: int | None = None,
                settled: int | None = None) -> int:
        """Apply one scan read at `watermark`, in a batch that moves it to `settled` (a batch
        is read as one: a late scan's hold counts from there); append what the detectors find
        to `out`; return the parcel's row, or DUPLICATE, or UNTRACKED."""
        table = self.parcels
        row = table.find(scan.waybill)
        is_new = row < 0
        if is_new:
            if scan.waybill in self.forgotten:
                return UNTRACKED  # a late scan of a parcel already finished and forgotten
            row = table.add(scan.waybill)
        if table.is_duplicate(row, scan.event_id):
            return DUPLICATE
        if is_new:
            prior = NEW
            self._remember(row, scan)
        else:
            prior = Prior(table.status[row], table.last_ts[row], table.last_type[row],
                          table.hub[row], table.city[row])
            if scan.merchant_id or scan.order_id or scan.origin or scan.destination:
                self._remember(row, scan)
        hub = table.strings.code(scan.hub_id)  # once per scan, for every detector
        self._move(row, scan, hub, prior)
        for on_scan in self.on_scans:
            on_scan(row, scan, hub, prior, out)
        at = self._next_due(row)
        if watermark is not None and scan.ts < watermark:
            settled = watermark if settled is None else settled
            if at <= settled:
                # A late scan left a deadline behind the watermark: hold it for the backfill.
                self.held[row] = max(self.held.get(row, 0), settled + self.lateness)
        self._set_timer(row, at)
        return row

    def _set_timer(self, row: int, at: int) -> None:
        """The row's timer, no sooner than its hold."""
        hold = self.held.get(row)
        self.parcels.set_timer(row, at if hold is None else max(at, hold))

    def on_record(self, record, out: list, settled: int | None = None) -> bool:
        """A record other than a scan, for the detector that consumes its type; True if it
        repeats one already read."""
        handler = self.handlers.get(type(record))
        if handler is None:
            raise TypeError(f"no detector consumes {type(record).__name__}")
        if type(record) is Shipment and record.waybill in self.forgotten:
            return False  # a late shipment of a parcel long finished: nothing to ask
        return handler(record, out, settled)

    def _move(self, row: int, scan: Scan, hub: int, prior: Prior) -> None:
        """The trip after the scan: the latest scan (newest in event time), the status."""
        table, ts = self.parcels, scan.ts
        status = prior.status
        terminal = scan.scan_type in TERMINAL_SCAN_TYPES
        if status == FINISHED:
            if terminal and ts < table.last_ts[row]:
                self._finish(row, scan)  # an earlier terminal scan read late: it ended the trip
            return  # late or repeated scans never revive a finished parcel
        if status == STALLED and ts >= prior.ts + self.stale_after:
            return  # past the stale horizon the parcel counts as forgotten
        if status == FREE or ts >= prior.ts:
            table.last_ts[row] = ts
            table.last_type[row] = SCAN_TYPE_CODE[scan.scan_type]
            if hub:
                table.hub[row] = hub
            if scan.city is not None:
                table.city[row] = table.strings.code(scan.city)
        if terminal:
            table.set_status(row, FINISHED)
            self._finish(row, scan)
        elif status == STALLED and ts > prior.ts:
            table.set_status(row, ACTIVE)

    def _finish(self, row: int, scan: Scan) -> None:
        """A finished parcel's last_ts / last_type are those of its earliest terminal scan, in
        event time: the trip ended there, whatever order the scans were read in."""
        table = self.parcels
        table.last_ts[row] = scan.ts
        table.last_type[row] = SCAN_TYPE_CODE[scan.scan_type]

    def _remember(self, row: int, scan: Scan) -> None:
        """Route, merchant and order are sent on PICKUP at least: keep what arrives."""
        table = self.parcels
        code = table.strings.code
        table.carrier[row] = code(scan.carrier)
        if scan.merchant_id is not None:
            table.merchant[row] = code(scan.merchant_id)
        if scan.order_id is not None:
            table.order_ids.set(row, scan.order_id)
        if scan.origin is not None:
            table.origin[row] = code(scan.origin)
        if scan.destination is not None:
            table.destination[row] = code(scan.destination)

    # -- event time ----------------------------------------------------------------------

    def _forget_at(self, row: int) -> int:
        """When the trip itself lets the row go (NO_TIMER: while it moves)."""
        status = self.parcels.status[row]
        if status == ACTIVE:
            return NO_TIMER
        keep = self.stale_after if status == STALLED else self.retention
        return self.parcels.last_ts[row] + keep

    def _next_due(self, row: int) -> int:
        """The row's next deadline, the trip's or a detector's (before any hold)."""
        return min(self._forget_at(row), self._wanted(row))

    def _wanted(self, row: int) -> int:
        """The earliest deadline any detector wants for the row (NO_TIMER: none)."""
        at = NO_TIMER
        for deadline in self.deadlines:
            due = deadline(row)
            if due < at:
                at = due
        return at

    def on_watermark(self, watermark: int, out: list, stamps: list | None = None) -> None:
        """Every detector's work at this watermark, then every due row; rows that are done
        are freed. `stamps` gets (position in `out`, due time) where each row's work begins:
        what a row finds is found at its timer's time, not at the watermark that passed it."""
        # Detectors first: a claim needs its signed parcel, which may be freed at this
        # watermark but was still there at the claim's time.
        for detector in self.detectors:
            detector.on_watermark(watermark, out)
        self.forgotten.expire(watermark)
        table = self.parcels
        for _ in range(4):  # a row may be due again at once (delayed, fired, then stale)
            due, times = table.pop_due(watermark)
            due = due.tolist()
            if stamps is None:
                for row in due:
                    self._on_due(row, watermark, out)
            else:
                for row, at in zip(due, times.tolist(), strict=True):
                    stamps.append((len(out), at))
                    self._on_due(row, watermark, out)
            if not due:
                break

    def _on_due(self, row: int, watermark: int, out: list) -> None:
        hold = self.held.get(row)
        if hold is not None:
            if hold > watermark:  # woken early by a detector's own bring-forward
                self.parcels.set_timer(row, hold)
                return
            del self.held[row]
        for on_due in self.on_dues:
            on_due(row, watermark, out)
        forget_at, wanted = self._forget_at(row), self._wanted(row)
        if forget_at <= watermark < wanted and not any(keeps(row) for keeps in self.keepers):
            self._free(row, out)
        else:
            self._set_timer(row, min(forget_at, wanted))

    def _free(self, row: int, out: list) -> None:
        # Remember it from the event time it went stale or its retention ended, not from
        # when it was noticed.
        gone_at = self._forget_at(row)
        for on_free in self.on_frees:
            on_free(row, gone_at, out)
        self.forgotten.add(self.parcels.waybill(row), gone_at)
        self.held.pop(row, None)
        self.parcels.free(row)

    def release_held(self) -> None:
        """Every input is caught up: nothing more of a backfill can come now, so held rows
        are judged at this watermark."""
        for row in self.held:
            self.parcels.set_timer(row, self._next_due(row))
        self.held.clear()

    def flush(self, out: list) -> None:
        """Every input is caught up: each detector releases what it held in case more came."""
        for detector in self.detectors:
            detector.flush(out)

    @property
    def tracked(self) -> int:
        return len(self.parcels)

    @property
    def stalled(self) -> int:
        return self.parcels.counts[STALLED]


def _implementing(detectors: list[Detector], hook: str) -> list:
    """The bound `hook` of each detector whose class overrides the protocol's default."""
    default = getattr(Detector, hook)
    return [getattr(d, hook) for d in detectors if getattr(type(d), hook) is not default]

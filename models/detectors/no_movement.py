"""NO_MOVEMENT: a parcel whose latest scan is not terminal gets no scan for
`no_movement_hours` (72 h) of event time.

What fires depends only on the scans' event times, never on how they were batched or
interleaved: for every silence longer than the threshold between two consecutive scans of a
parcel, a FIRING with `event_ts` = first scan + 72 h and a RESOLVED at the scan that ended
it; for a trailing silence, a FIRING once the watermark reaches the deadline, and a RESOLVED
when the parcel scans again. Ties (a scan exactly at the deadline) do not fire.

A silence that a newer scan reveals is held as *pending* until the watermark passes its
deadline, because a scan from inside it may still arrive within the allowed lateness and
split it. Pending silences are rare and short-lived, so they live in a side dict, not in
a column of every row.
"""

from __future__ import annotations

from typing import NamedTuple

from models.detection import Detection
from models.detectors import Detector, Prior
from models.events import SCAN_TYPES, TERMINAL_SCAN_TYPES, Scan
from models.parcels import ACTIVE, FINISHED, NO_TIMER, SCAN_TYPE_CODE, STALLED
from models.settings import HOUR_MS

NO_MOVEMENT = "NO_MOVEMENT"


class Anchor(NamedTuple):
    """The scan a silence starts from."""

    ts: int
    scan_type: int
    hub: int
    city: int


class Pending(NamedTuple):
    """A silence already ended by a later scan, waiting for the watermark to confirm it."""

    anchor: Anchor
    resume_ts: int
    resume_type: int
    fired: bool = False


class NoMovementDetector(Detector):
    def __init__(self, thresholds, parcels, zone):
        super().__init__(thresholds, parcels, zone)
        self.limit = thresholds.no_movement_ms
        self.stale_after = thresholds.stale_after_ms
        self.pending: dict[int, Pending] = {}

    # -- scans ---------------------------------------------------------------------------

    def on_scan(self, row: int, scan: Scan, hub: int, prior: Prior, out: list) -> None:
        status, last_ts, ts = prior.status, prior.ts, scan.ts
        if status == ACTIVE:
            if last_ts < ts <= last_ts + self.limit and row not in self.pending:
                return  # the common case: the parcel moves on
            pending = self.pending.get(row)
            if ts > last_ts + self.limit:
                if pending is not None:  # a second silence: the first is certain by now
                    self._emit_pending(row, pending, out)
                self.pending[row] = Pending(Anchor(*prior[1:]), ts,
                                            SCAN_TYPE_CODE[scan.scan_type])
            elif (ts < last_ts and pending is not None
                  and pending.anchor.ts < ts < pending.resume_ts):
                self._split(row, pending, scan)
        elif status == FINISHED:
            pending = self.pending.get(row)
            if pending is not None and pending.anchor.ts < ts < pending.resume_ts:
                self._split(row, pending, scan)
        elif status == STALLED and ts < last_ts + self.stale_after:
            if ts > last_ts:
                self.pending[row] = Pending(Anchor(*prior[1:]), ts,
                                            SCAN_TYPE_CODE[scan.scan_type], True)
            elif scan.scan_type in TERMINAL_SCAN_TYPES:
                out.append(self._detection(Anchor(*prior[1:]), row, "RESOLVED", ts,
                                           resolved_by=scan.scan_type))

    def _split(self, row: int, pending: Pending, scan: Scan) -> None:
        """A late scan from inside a pending silence: it ends it earlier or cuts it short."""
        code = SCAN_TYPE_CODE[scan.scan_type]
        if pending.fired or scan.ts > pending.anchor.ts + self.limit:
            self.pending[row] = pending._replace(resume_ts=scan.ts, resume_type=code)
        elif pending.resume_ts > scan.ts + self.limit:
            table = self.parcels
            anchor = Anchor(scan.ts, code, table.code(scan.hub_id), table.code(scan.city))
            self.pending[row] = pending._replace(anchor=anchor)
        else:
            del self.pending[row]

    # -- event time ----------------------------------------------------------------------

    def deadline(self, row: int) -> int:
        """The trailing silence's deadline while the parcel moves, or a pending silence's."""
        table = self.parcels
        at = table.last_ts[row] + self.limit if table.status[row] == ACTIVE else NO_TIMER
        pending = self.pending.get(row)
        if pending is not None:
            at = min(at, pending.resume_ts if pending.fired else pending.anchor.ts + self.limit)
        return at

    def on_due(self, row: int, watermark: int, out: list) -> None:
        table = self.parcels
        pending = self.pending.get(row)
        if pending is not None and pending.anchor.ts + self.limit <= watermark:
            if not pending.fired:
                out.append(self._detection(pending.anchor, row, "FIRING",
                                           pending.anchor.ts + self.limit))
                pending = self.pending[row] = pending._replace(fired=True)
            if pending.resume_ts <= watermark:
                self._emit_pending(row, pending, out)
        if table.status[row] == ACTIVE and table.last_ts[row] + self.limit <= watermark:
            out.append(self._detection(self._latest(row), row, "FIRING",
                                       table.last_ts[row] + self.limit))
            table.set_status(row, STALLED)

    def keeps(self, row: int) -> bool:
        return row in self.pending

    def flush(self, out: list) -> None:
        """Silences that fired and were ended by a later scan resolve now."""
        for row, pending in list(self.pending.items()):
            if pending.fired:
                self._emit_pending(row, pending, out)

    def _emit_pending(self, row: int, pending: Pending, out: list[Detection]) -> None:
        del self.pending[row]
        deadline = pending.anchor.ts + self.limit
        if not pending.fired:
            out.append(self._detection(pending.anchor, row, "FIRING", deadline))
        out.append(self._detection(pending.anchor, row, "RESOLVED", pending.resume_ts,
                                   resolved_by=SCAN_TYPES[pending.resume_type]))

    # -- records -------------------------------------------------------------------------

    def _latest(self, row: int) -> Anchor:
        table = self.parcels
        return Anchor(table.last_ts[row], table.last_type[row], table.hub[row], table.city[row])

    def _detection(self, anchor: Anchor, row: int, status: str, event_ts: int,
                   **extra) -> Detection:
        table = self.parcels
        return Detection(
            type=NO_MOVEMENT,
            status=status,
            severity="WARNING",
            subject=table.waybill(row),
            onset_ts=anchor.ts + self.limit,
            event_ts=event_ts,
            carrier=table.text(table.carrier[row]),
            merchant_id=table.text(table.merchant[row]),
            order_id=table.order_id(row),
            waybill=table.waybill(row),
            details={
                "last_scan_type": SCAN_TYPES[anchor.scan_type],
                "last_scan_ts": anchor.ts,
                "last_hub_id": table.text(anchor.hub),
                "last_city": table.text(anchor.city),
                "origin": table.text(table.origin[row]),
                "destination": table.text(table.destination[row]),
                "dwell_hours": round((event_ts - anchor.ts) / HOUR_MS, 2),
                **extra,
            },
        )

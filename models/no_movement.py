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

from typing import Literal, NamedTuple

from models.delays import DelayWatch
from models.detection import Detection
from models.events import SCAN_TYPES, TERMINAL_SCAN_TYPES, Scan
from models.forgotten import ForgottenWaybills
from models.parcels import ACTIVE, FINISHED, SCAN_TYPE_CODE, STALLED, ParcelTable
from models.settings import HOUR_MS, Thresholds

NO_MOVEMENT = "NO_MOVEMENT"
Outcome = Literal["accepted", "duplicate"]
# What `apply_scan` returns instead of a row.
DUPLICATE = -1   # a repeated event id: nothing changed
UNTRACKED = -2   # accepted, but about a parcel no longer tracked (finished and forgotten)


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


class NoMovementDetector:
    def __init__(self, thresholds: Thresholds):
        self.limit = thresholds.no_movement_ms
        # Signed parcels must stay for the dispute window: a claim may come that late.
        self.retention = max(thresholds.finished_retention_ms, thresholds.dispute_window_ms)
        self.stale_after = thresholds.stale_after_ms
        self.parcels = ParcelTable()
        self.pending: dict[int, Pending] = {}
        self.forgotten = ForgottenWaybills(thresholds.forget_after_ms)
        # Delay onsets share the row's timer: the earlier of the two deadlines is armed.
        self.delays = DelayWatch(thresholds, self.parcels)

    # -- scans ---------------------------------------------------------------------------

    def on_scan(self, scan: Scan, out: list) -> Outcome:
        """Apply one scan; append any detection (and delay onset or end) to `out`; say
        whether it was a duplicate."""
        return "duplicate" if self.apply_scan(scan, out) == DUPLICATE else "accepted"

    def apply_scan(self, scan: Scan, out: list) -> int:
        """`on_scan` for the shard: the parcel's row (looked up once for every detector),
        or DUPLICATE, or UNTRACKED."""
        hub = self.parcels.strings.code(scan.hub_id)  # once per scan, for both sides
        row = self._apply(scan, hub, out)
        if row >= 0:
            self.delays.on_scan(row, scan, hub, out)
        return row

    def _apply(self, scan: Scan, hub: int, out: list[Detection]) -> int:
        table = self.parcels
        row = table.find(scan.waybill)
        is_new = row < 0
        if is_new:
            if scan.waybill in self.forgotten:
                return UNTRACKED  # a late scan of a parcel already finished and forgotten
            row = table.add(scan.waybill)
        if table.is_duplicate(row, scan.event_id):
            return DUPLICATE
        if is_new or scan.merchant_id or scan.order_id or scan.origin or scan.destination:
            self._remember(row, scan)
        status = table.status[row]
        terminal = scan.scan_type in TERMINAL_SCAN_TYPES
        if status == ACTIVE and not is_new and not terminal and row not in self.pending:
            ts, last_ts = scan.ts, table.last_ts[row]
            if last_ts < ts <= last_ts + self.limit:  # the common case: the parcel moves on
                self._set_latest(row, scan, hub)
                table.set_timer(row, ts + self.limit)
                return row
        if status == FINISHED:
            pending = self.pending.get(row)
            if pending is not None and pending.anchor.ts < scan.ts < pending.resume_ts:
                self._split(row, pending, scan)
            if terminal and scan.ts < table.last_ts[row]:
                self._finish(row, scan)  # an earlier terminal scan read late: it ended the trip
            self._arm(row)
            return row  # late or repeated scans never revive a finished parcel
        if status == STALLED and scan.ts >= table.last_ts[row] + self.stale_after:
            return row  # past the stale horizon the parcel counts as forgotten
        if is_new:
            self._set_latest(row, scan, hub)
        elif status == STALLED:
            self._on_stalled(row, scan, hub, out)
        else:
            self._on_active(row, scan, hub, out)
        if terminal:
            table.set_status(row, FINISHED)
            self._finish(row, scan)
        self._arm(row)
        return row

    def _finish(self, row: int, scan: Scan) -> None:
        """A finished parcel's last_ts / last_type are those of its earliest terminal scan, in
        event time: the trip ended there, whatever order the scans were read in."""
        table = self.parcels
        table.last_ts[row] = scan.ts
        table.last_type[row] = SCAN_TYPE_CODE[scan.scan_type]

    def _on_stalled(self, row: int, scan: Scan, hub: int, out: list[Detection]) -> None:
        table = self.parcels
        last_ts = table.last_ts[row]
        if scan.ts > last_ts:
            self.pending[row] = Pending(self._latest(row), scan.ts,
                                        SCAN_TYPE_CODE[scan.scan_type], True)
            table.set_status(row, ACTIVE)
        elif scan.scan_type in TERMINAL_SCAN_TYPES:
            out.append(self._detection(self._latest(row), row, "RESOLVED", scan.ts,
                                       resolved_by=scan.scan_type))
            table.set_status(row, ACTIVE)
        if scan.ts >= last_ts:
            self._set_latest(row, scan, hub)

    def _on_active(self, row: int, scan: Scan, hub: int, out: list[Detection]) -> None:
        table, ts = self.parcels, scan.ts
        last_ts = table.last_ts[row]
        pending = self.pending.get(row)
        if ts > last_ts:
            if ts > last_ts + self.limit:
                if pending is not None:  # a second silence: the first is certain by now
                    self._emit_pending(row, pending, out)
                self.pending[row] = Pending(self._latest(row), ts, SCAN_TYPE_CODE[scan.scan_type])
            self._set_latest(row, scan, hub)
        elif ts == last_ts:
            self._set_latest(row, scan, hub)
        elif pending is not None and pending.anchor.ts < ts < pending.resume_ts:
            self._split(row, pending, scan)

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

    def _set_latest(self, row: int, scan: Scan, hub: int) -> None:
        table = self.parcels
        table.last_ts[row] = scan.ts
        table.last_type[row] = SCAN_TYPE_CODE[scan.scan_type]
        if hub:
            table.hub[row] = hub
        if scan.city is not None:
            table.city[row] = table.strings.code(scan.city)

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

    def _arm(self, row: int) -> None:
        """The row's one timer: the earliest of its pending silence and its status's timer."""
        table = self.parcels
        status, last_ts = table.status[row], table.last_ts[row]
        if status == ACTIVE:
            at = last_ts + self.limit
        elif status == STALLED:
            at = last_ts + self.stale_after
        else:
            at = last_ts + self.retention
        pending = self.pending.get(row)
        if pending is not None:
            at = min(at, pending.resume_ts if pending.fired else pending.anchor.ts + self.limit)
        table.set_timer(row, min(at, self.delays.deadline(row)))

    # -- event time ----------------------------------------------------------------------

    def on_watermark(self, watermark: int, out: list[Detection]) -> None:
        """Fire every deadline at or before the watermark; free rows that are done."""
        table = self.parcels
        self.forgotten.expire(watermark)
        for _ in range(4):  # a row may be due again at once (delayed, fired, then stale)
            due = table.pop_due(watermark).tolist()
            for row in due:
                self._on_due(row, watermark, out)
            if not due:
                break

    def _on_due(self, row: int, watermark: int, out: list) -> None:
        table = self.parcels
        self.delays.on_due(row, watermark, out)
        pending = self.pending.get(row)
        if pending is not None and pending.anchor.ts + self.limit <= watermark:
            if not pending.fired:
                out.append(self._detection(pending.anchor, row, "FIRING",
                                           pending.anchor.ts + self.limit))
                pending = self.pending[row] = pending._replace(fired=True)
            if pending.resume_ts <= watermark:
                self._emit_pending(row, pending, out)
        status = table.status[row]
        if status == ACTIVE and table.last_ts[row] + self.limit <= watermark:
            out.append(self._detection(self._latest(row), row, "FIRING",
                                       table.last_ts[row] + self.limit))
            table.set_status(row, STALLED)
        elif status != ACTIVE and row not in self.pending and self._expired(row, watermark):
            # Remember it from the event time it went stale, not from when we noticed.
            gone_at = table.last_ts[row] + self._keep(row)
            self.delays.on_free(row, gone_at, out)
            self.forgotten.add(table.waybill(row), gone_at)
            table.free(row)
            return
        self._arm(row)

    def flush_resolved(self, out):
        for row, pending in list(self.pending.items()):
            if pending.fired:
                self._emit_pending(row, pending, out)
                self._arm(row)

    def _keep(self, row: int) -> int:
        return self.stale_after if self.parcels.status[row] == STALLED else self.retention

    def _expired(self, row: int, watermark: int) -> bool:
        return self.parcels.last_ts[row] + self._keep(row) <= watermark

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

    @property
    def tracked(self) -> int:
        return len(self.parcels)

    @property
    def stalled(self) -> int:
        return self.parcels.counts[STALLED]

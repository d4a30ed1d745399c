"""SIGNED_DISPUTED, the parcel side: signing evidence, damage signals, dispute matching.

A dispute is judged when the watermark passes its `ts`: by then every scan up to that time
has been read, so whether the scan or the claim was read first never changes the answer.
A claim that finds no signed parcel is kept for the dispute window plus `forget_after_days`
from its `ts` or from when it was judged, whichever is later: a SIGNED scan read late (a
carrier's backfill, a day of records loaded again) still meets it, and a claims partition
read far ahead of the scans (a replay, a job started from the beginning) loses none. A
`NOT_RECEIVED` claim matches when the parcel's latest scan at the claim's time is `SIGNED`
and the claim is dated within `dispute_window_days` after signing; a `DAMAGED` claim in that
window marks the delivery damaged (for route damage rates). Signed parcels stay in the
parcel table for the dispute window, then are freed like every finished parcel.

Risk factors that need only this parcel are found here; those that need every hub and
carrier (their recent signed-dispute rates) are added by the aggregation step.
"""

from __future__ import annotations

import heapq
import math
from datetime import UTC, datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

import msgspec

from models.detectors import Columns, Detector, Prior
from models.events import TERMINAL_SCAN_TYPES, Dispute, Proof, Scan, Signer
from models.geo import haversine_km
from models.messages import DisputeCandidate, RouteEvent, Signed
from models.parcels import DAMAGED, FINISHED, NAN, SCAN_TYPE_CODE, SIGNED
from models.privacy import mask_personal_data
from models.settings import DAY_MS

SIGNERS: tuple[str, ...] = Signer.__args__
PROOFS: tuple[str, ...] = Proof.__args__


SIGNING_TYPES = frozenset({"SIGNED", "EXCEPTION"})


class DisputeMatcher(Detector):
    columns: ClassVar[Columns] = {
        "signer": ("B", 0),    # index in SIGNERS + 1, 0 = unknown
        "proof": ("B", 0),     # index in PROOFS + 1, 0 = unknown
        "flags": ("B", 0),     # DAMAGED, SIGNED
        "lat": ("f", NAN),     # where the SIGNED scan happened, once signed
        "lon": ("f", NAN),
        "dest_lat": ("f", NAN),  # the consignee's geocode
        "dest_lon": ("f", NAN),
    }
    records = (Dispute,)

    def __init__(self, thresholds, parcels, zone):
        super().__init__(thresholds, parcels, zone)
        self.window = thresholds.dispute_window_ms
        # Signed parcels must stay for the dispute window: a claim may come that late.
        self.keep_finished_ms = self.window
        self.zone = ZoneInfo(zone)
        self.queue: list[tuple[int, int, Dispute]] = []   # (ts, seq, dispute), by ts
        self.seen: dict[str, int] = {}                     # dispute event id -> ts
        # waybill -> (kept until this watermark, claim) for claims not yet met
        self.unmatched: dict[str, list[tuple[int, Dispute]]] = {}
        self.keep_unmatched_ms = self.window + thresholds.forget_after_ms
        self.seq = 0
        self.pruned_day: int | None = None

    # -- scans ---------------------------------------------------------------------------

    def on_scan(self, row: int, scan: Scan, hub: int, prior: Prior, out: list) -> None:
        """Record what disputes and routes need."""
        if scan.scan_type not in SIGNING_TYPES and scan.dest_lat is None:
            return
        table = self.parcels
        if scan.dest_lat is not None and scan.dest_lon is not None:
            table.dest_lat[row], table.dest_lon[row] = scan.dest_lat, scan.dest_lon
        if scan.scan_type == "EXCEPTION" and scan.exception_code == "DAMAGED":
            self._damaged_by_scan(row, scan, out)
        elif scan.scan_type in TERMINAL_SCAN_TYPES and table.status[row] == FINISHED:
            self._on_terminal(row, scan, out)

    def _damaged_by_scan(self, row: int, scan: Scan, out: list) -> None:
        table = self.parcels
        if table.flags[row] & DAMAGED:
            return
        if not table.flags[row] & SIGNED:
            table.flags[row] |= DAMAGED  # the delivery, when it comes, counts as damaged
            return
        signed_ts = table.last_ts[row]
        if scan.ts <= signed_ts + self.window:  # read after the delivery was counted
            table.flags[row] |= DAMAGED
            out.append(self._damage(row, max(scan.ts, signed_ts)))

    def _damage(self, row: int, at_ts: int) -> RouteEvent:
        table, text = self.parcels, self.parcels.text
        return RouteEvent("damage", text(table.carrier[row]), text(table.origin[row]),
                          text(table.destination[row]), text(table.merchant[row]),
                          table.last_ts[row], at_ts)

    def _on_terminal(self, row: int, scan: Scan, out: list) -> None:
        """The parcel's trip ended at its earliest terminal scan (the table keeps it): record
        the signing if that is this SIGNED scan; forget it if an earlier RETURNED is read late.
        A delivery already counted for its route stays counted."""
        table = self.parcels
        is_end = table.last_ts[row] == scan.ts and table.last_type[row] == SCAN_TYPE_CODE[
            scan.scan_type]
        if not is_end:
            return
        if scan.scan_type == "SIGNED":
            if not table.flags[row] & SIGNED:
                self._record_signing(row, scan, out)
        else:
            table.flags[row] &= ~SIGNED & 0xFF

    def _record_signing(self, row: int, scan: Scan, out: list) -> None:
        table = self.parcels
        table.flags[row] |= SIGNED
        table.signer[row] = SIGNERS.index(scan.signer) + 1 if scan.signer else 0
        table.proof[row] = PROOFS.index(scan.proof) + 1 if scan.proof else 0
        # The position column held the last place; from now on it is where it was signed.
        has_position = scan.lat is not None and scan.lon is not None
        table.lat[row] = scan.lat if has_position else NAN
        table.lon[row] = scan.lon if has_position else NAN
        if scan.hub_id is not None:  # claims are counted against the hub that signed
            table.hub[row] = table.code(scan.hub_id)
        text = table.text
        out.append(Signed(
            carrier=scan.carrier, origin=text(table.origin[row]),
            destination=text(table.destination[row]), merchant_id=text(table.merchant[row]),
            hub_id=scan.hub_id, signed_ts=table.last_ts[row],
            damaged=bool(table.flags[row] & DAMAGED)))
        waiting = self.unmatched.pop(scan.waybill, None)
        if waiting:  # claims judged before this late SIGNED scan was read meet it now
            for kept_until, dispute in waiting:
                self._judge(dispute, out, kept_until)

    # -- disputes ------------------------------------------------------------------------

    def on_record(self, dispute: Dispute, out: list, settled: int | None = None) -> bool:
        """Queue a claim until the watermark passes it; repeats of an event id are ignored."""
        if dispute.event_id in self.seen:  # claims are few: keep their ids whole
            return True
        self.seen[dispute.event_id] = dispute.ts
        if dispute.kind in ("NOT_RECEIVED", "DAMAGED"):
            if dispute.note is not None:  # state is snapshotted to disk: keep it masked there
                dispute = msgspec.structs.replace(dispute, note=mask_personal_data(dispute.note))
            self.seq += 1
            heapq.heappush(self.queue, (dispute.ts, self.seq, dispute))
        return False

    def on_watermark(self, watermark: int, out: list) -> None:
        queue = self.queue
        while queue and queue[0][0] <= watermark:
            dispute = heapq.heappop(queue)[2]
            self._judge(dispute, out, max(dispute.ts, watermark) + self.keep_unmatched_ms)
        day = watermark // DAY_MS
        if day != self.pruned_day:  # once a day: forget ids of claims long judged
            self.pruned_day = day
            horizon = watermark - self.window
            self.seen = {eid: ts for eid, ts in self.seen.items() if ts > horizon}
            self.unmatched = {waybill: kept for waybill, claims in self.unmatched.items()
                              if (kept := [c for c in claims if c[0] > watermark])}

    def flush(self, out: list) -> None:
        """Every input is caught up: claims that match now need not wait for the watermark.
        The others stay queued: their SIGNED scan may still come within the lateness."""
        waiting = []
        while self.queue:
            entry = heapq.heappop(self.queue)
            if self._matches(entry[2]):
                self._judge(entry[2], out, 0)
            else:
                waiting.append(entry)
        self.queue = waiting
        heapq.heapify(self.queue)

    def _matches(self, dispute: Dispute) -> bool:
        """The parcel is signed and the claim dated within the window after signing."""
        table = self.parcels
        row = table.find(dispute.waybill)
        if row < 0 or not table.flags[row] & SIGNED:
            return False
        return table.last_ts[row] <= dispute.ts <= table.last_ts[row] + self.window

    def _judge(self, dispute: Dispute, out: list, keep_until: int) -> None:
        """A claim that finds no signed parcel is kept until the watermark passes
        `keep_until`, for a SIGNED scan read late."""
        if not self._matches(dispute):
            self.unmatched.setdefault(dispute.waybill, []).append((keep_until, dispute))
            return
        table = self.parcels
        row = table.find(dispute.waybill)
        signed_ts = table.last_ts[row]
        text = table.text
        if dispute.kind == "DAMAGED":
            if not table.flags[row] & DAMAGED:
                table.flags[row] |= DAMAGED
                out.append(self._damage(row, dispute.ts))
            return
        signer = SIGNERS[table.signer[row] - 1] if table.signer[row] else None
        proof = PROOFS[table.proof[row] - 1] if table.proof[row] else None
        distance = self._distance_km(row)
        factors = []
        if signer != "RECIPIENT":
            factors.append(f"SIGNER_{signer or 'UNKNOWN'}")
        if proof in (None, "NONE"):
            factors.append("PROOF_NONE")
        if distance is not None and distance > self.thresholds.far_signing_km:
            factors.append("FAR_FROM_CONSIGNEE")
        if self._at_night(signed_ts):
            factors.append("NIGHT_SIGNING")
        out.append(DisputeCandidate(
            dispute_id=dispute.event_id, dispute_ts=dispute.ts, waybill=dispute.waybill,
            carrier=text(table.carrier[row]),
            merchant_id=dispute.merchant_id or text(table.merchant[row]),
            order_id=dispute.order_id or table.order_id(row),
            hub_id=text(table.hub[row]), signed_ts=signed_ts, signer=signer, proof=proof,
            distance_km=None if distance is None else round(distance, 2),
            factors=tuple(factors),
            note=dispute.note))

    def _distance_km(self, row: int) -> float | None:
        table = self.parcels
        points = (table.lat[row], table.lon[row], table.dest_lat[row],
                  table.dest_lon[row])
        if any(math.isnan(p) for p in points):
            return None
        return haversine_km(*points)

    def _at_night(self, ts: int) -> bool:
        hour = datetime.fromtimestamp(ts / 1000, tz=UTC).astimezone(self.zone).hour
        return not self.thresholds.daytime_start_hour <= hour < self.thresholds.daytime_end_hour

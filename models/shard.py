"""One shard of the keyed state: the detectors for the parcels whose waybill hashes to it.

Every item a shard receives carries the events of one input batch for this shard together
with that input partition's progress. Because the two travel in one item, a shard always
applies a partition's events before the watermark that those events allow: the result never
depends on how the runtime interleaves partitions or workers.
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import NamedTuple

import numpy as np

from models.detection import Detection
from models.events import Dispute, MerchantAction, Scan, Shipment
from models.messages import ONE_SCAN, CarrierScans, ParcelVerdict, ShardTick
from models.parcels import ACTIVE, STALLED
from models.settings import MINUTE_MS, Thresholds
from models.tracking import DUPLICATE, ParcelTracker
from models.watermark import Watermark

MAX_CARRIERS = 256  # carriers whose latest scan a shard follows
# Records besides scans, by the topic they come from.
RECORD_TOPICS = {Dispute: "disputes", Shipment: "shipments", MerchantAction: "merchant-actions"}


def shard_of(waybill: str, shards: int) -> int:
    """Stable across processes and restarts (unlike `hash()`)."""
    return zlib.crc32(waybill.encode()) % shards



class ShardInput(NamedTuple):
    partition: str            # "topic/partition" the events came from
    events: list              # Scan / Dispute records for this shard, in read order
    max_ts: int | None        # the largest ts read from that partition so far
    caught_up: bool           # the partition had no more records when the batch was read
    shard: int = 0            # the shard these events belong to


class Shard:
    """Returns, per item: the per-parcel detections, then what the aggregate step needs
    (deliveries, damage, matched claims) and a `ShardTick` with this shard's watermark."""

    def __init__(self, thresholds: Thresholds, partitions: list[str],
                 zone: str = "Asia/Shanghai", caught_up_is_the_end: bool = True):
        """`caught_up_is_the_end`: inputs that are all caught up are finished (`replay`,
        `--exit-at-end`), so deadlines held for a backfill are judged then. A live job reads
        to the end of its partitions after nearly every poll; there the watermark, moving
        with the wall clock while idle, releases them instead."""
        self.thresholds = thresholds
        self.watermark = Watermark(partitions, thresholds.lateness_ms)
        self.tracker = ParcelTracker(thresholds, zone)
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (topic, outcome) -> count
        self.caught_up_is_the_end = caught_up_is_the_end
        self.shard = 0
        self.last_tick: ShardTick | None = None
        # (position in the last output, event time) where what was found at a time begins
        self.stamps: list[tuple[int, int]] = []
        # Each carrier's largest scan ts read here: how long a feed has been quiet.
        self.carrier_latest: dict[str, int] = {}

    def resume(self, partitions: list[str]) -> None:
        """After a restart every partition must report again before it stops holding the
        watermark: "caught up" from before the restart says nothing about what was
        written since. Partitions added since the snapshot are expected too."""
        self.watermark.forget_progress(partitions)
        self.last_tick = None

    def apply(self, item: ShardInput) -> list:
        self.shard = item.shard
        out: list = []
        on_scan, on_record = self.tracker.on_scan, self.tracker.on_record
        outcomes = self.outcomes
        # Late: older than the watermark when read (before this batch's progress moves it).
        # What a late scan leaves due waits from where the reading stood: the batch is read
        # as one, and the reading stands at its most advanced partition (a backfill read in
        # one partition must not be judged as the others catch up).
        watermark = self.watermark.value
        settled = self.watermark.observe(item.partition, item.max_ts, item.caught_up)
        frontier = self.watermark.frontier
        if frontier is not None and (settled is None or frontier > settled):
            settled = frontier
        scans = duplicates = late = 0
        latest = self.carrier_latest
        # What this batch read of each carrier's feed, for the global step.
        minutes: dict[str, dict[int, int]] = {}  # carrier -> minute of ts -> packed_minute
        batch_latest: dict[str, int] = {}
        batch_late: dict[str, int] = {}
        for event in item.events:
            if type(event) is Scan:
                scans += 1
                if on_scan(event, out, watermark, settled) == DUPLICATE:
                    duplicates += 1
                    continue
                carrier, ts = event.carrier, event.ts
                if watermark is not None and ts < watermark:
                    late += 1
                    batch_late[carrier] = batch_late.get(carrier, 0) + 1
                known = latest.get(carrier)
                if known is None:
                    if len(latest) >= MAX_CARRIERS:  # carrier codes are few; junk is not
                        continue
                    latest[carrier] = ts
                elif ts > known:
                    latest[carrier] = ts
                carrier_minutes = minutes.get(carrier)
                if carrier_minutes is None:
                    carrier_minutes = minutes[carrier] = {}
                minute, at = divmod(ts, MINUTE_MS)
                seen = carrier_minutes.get(minute)
                if seen is None:
                    carrier_minutes[minute] = ONE_SCAN | at << 16 | at
                else:
                    first, last = seen >> 16 & 0xFFFF, seen & 0xFFFF
                    carrier_minutes[minute] = (seen >> 32) + 1 << 32 | (
                        at if at < first else first) << 16 | (at if at > last else last)
                if ts > batch_latest.get(carrier, -1):
                    batch_latest[carrier] = ts
            else:
                topic = RECORD_TOPICS[type(event)]
                if on_record(event, out, settled):
                    outcome = "duplicate"
                elif watermark is not None and event.ts < watermark:
                    outcome = "late"
                else:
                    outcome = "accepted"
                outcomes[topic, outcome] += 1
        outcomes["scans", "accepted"] += scans - duplicates - late
        outcomes["scans", "duplicate"] += duplicates
        if late:
            outcomes["scans", "late"] += late
        if batch_latest:
            # Before the watermark is known, they count from the earliest ts read: no check
            # of a feed's silence before that could use them, every later one must.
            read_at = (watermark if watermark is not None else min(
                minute * MINUTE_MS + (packed >> 16 & 0xFFFF)
                for carrier_minutes in minutes.values()
                for minute, packed in carrier_minutes.items()))
            out.append(CarrierScans(read_at, minutes, batch_latest, batch_late, self.shard,
                                    self._in_flight(batch_latest), settled or read_at))
        # What reading found was found at the watermark it was read at.
        self.stamps = [(0, watermark or 0)]
        self._advance(out)
        return out

    def _in_flight(self, carriers: dict[str, int]) -> dict[str, int]:
        """This shard's parcels on their way (moving or stalled), for each of `carriers`."""
        table = self.tracker.parcels
        status = np.frombuffer(table.status, dtype=np.uint8)
        codes = np.frombuffer(table.carrier, dtype=np.uint32)[(status == ACTIVE)
                                                              | (status == STALLED)]
        counts = np.bincount(codes)
        wanted = {table.code(carrier): carrier for carrier in carriers}
        return {carrier: int(counts[code]) if code < len(counts) else 0
                for code, carrier in wanted.items()}

    def advance_idle(self, wall_ms: int) -> list:
        """Called on a wall-clock cadence: with every input idle, event time follows it."""
        out: list = []
        self.stamps = []
        self.watermark.advance_idle(wall_ms)
        self._advance(out)
        return out

    def _advance(self, out: list) -> None:
        watermark = self.watermark.value
        caught_up = self.watermark.all_caught_up
        if caught_up and self.caught_up_is_the_end:
            self.tracker.release_held()
        if watermark is not None:
            self.stamps.append((len(out), watermark))
            self.tracker.on_watermark(watermark, out, self.stamps)
        if caught_up:
            self.stamps.append((len(out), watermark or 0))
            self.tracker.flush(out)
        tick = ShardTick(self.shard, watermark, caught_up)
        if tick != self.last_tick or len(out):
            self.last_tick = tick
            out.append(tick)

    def for_aggregate(self, out: list) -> list:
        """`out` (of the last `apply` or `advance_idle`) with every per-parcel alert as a
        verdict for the global step, stamped with the event time at which this shard found
        it (the global step may hold it while its carrier's feed is silent)."""
        if not self.stamps or self.stamps[0][0] > 0:
            self.stamps.insert(0, (0, self.watermark.value or 0))
        bounds = [start for start, _ in self.stamps[1:]] + [len(out)]
        for (start, at), end in zip(self.stamps, bounds, strict=True):
            for i in range(start, end):
                if type(out[i]) is Detection:
                    out[i] = ParcelVerdict(at, out[i])
        return out

    def drain_outcomes(self) -> Counter[tuple[str, str]]:
        outcomes, self.outcomes = self.outcomes, Counter()
        return outcomes

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

from models.events import Dispute, Scan
from models.messages import ShardTick
from models.no_movement import DUPLICATE, NoMovementDetector
from models.settings import Thresholds
from models.signing import DisputeMatcher
from models.watermark import Watermark


def shard_of(waybill: str, shards: int) -> int:
    """Stable across processes and restarts (unlike `hash()`)."""
    return zlib.crc32(waybill.encode()) % shards


SIGNING_TYPES = frozenset({"SIGNED", "EXCEPTION"})


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
                 zone: str = "Asia/Shanghai"):
        self.thresholds = thresholds
        self.watermark = Watermark(partitions, thresholds.lateness_ms)
        self.no_movement = NoMovementDetector(thresholds)
        self.disputes = DisputeMatcher(thresholds, zone, self.no_movement.parcels)
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (topic, outcome) -> count
        self.shard = 0
        self.last_tick: ShardTick | None = None

    def resume(self, partitions: list[str]) -> None:
        """After a restart every partition must report again before it stops holding the
        watermark: "caught up" from before the restart says nothing about what was
        written since. Partitions added since the snapshot are expected too."""
        self.watermark.forget_progress(partitions)
        self.last_tick = None

    def apply(self, item: ShardInput) -> list:
        self.shard = item.shard
        out: list = []
        apply_scan = self.no_movement.apply_scan
        matcher = self.disputes
        scans = duplicates = disputes = disputes_repeated = 0
        for event in item.events:
            if type(event) is Scan:
                scans += 1
                row = apply_scan(event, out)
                if row == DUPLICATE:
                    duplicates += 1
                elif row >= 0 and (event.scan_type in SIGNING_TYPES
                                   or event.dest_lat is not None):
                    matcher.on_scan(row, event, out)
            elif type(event) is Dispute:
                disputes += 1
                if matcher.on_dispute(event) == "duplicate":
                    disputes_repeated += 1
        outcomes = self.outcomes
        outcomes["scans", "accepted"] += scans - duplicates
        outcomes["scans", "duplicate"] += duplicates
        outcomes["disputes", "accepted"] += disputes - disputes_repeated
        outcomes["disputes", "duplicate"] += disputes_repeated
        self.watermark.observe(item.partition, item.max_ts, item.caught_up)
        self._advance(out)
        return out

    def advance_idle(self, wall_ms: int) -> list:
        """Called on a wall-clock cadence: with every input idle, event time follows it."""
        out: list = []
        self.watermark.advance_idle(wall_ms)
        self._advance(out)
        return out

    def _advance(self, out: list) -> None:
        watermark = self.watermark.value
        if watermark is not None:
            # Claims first: a claim needs its signed parcel, which may be freed at this
            # watermark but was still there at the claim's time.
            self.disputes.on_watermark(watermark, out)
            self.no_movement.on_watermark(watermark, out)
        caught_up = self.watermark.all_caught_up
        if caught_up:
            self.no_movement.flush_resolved(out)
            self.no_movement.delays.flush(out)
            self.disputes.flush(out)
        tick = ShardTick(self.shard, watermark, caught_up)
        if tick != self.last_tick or len(out):
            self.last_tick = tick
            out.append(tick)

    def drain_outcomes(self) -> Counter[tuple[str, str]]:
        outcomes, self.outcomes = self.outcomes, Counter()
        return outcomes

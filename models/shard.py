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

from models.detection import Detection
from models.events import Dispute, Scan
from models.no_movement import NoMovementDetector
from models.settings import Thresholds
from models.watermark import Watermark


def shard_of(waybill: str, shards: int) -> int:
    """Stable across processes and restarts (unlike `hash()`)."""
    return zlib.crc32(waybill.encode()) % shards


class ShardInput(NamedTuple):
    partition: str            # "topic/partition" the events came from
    events: list              # Scan / Dispute records for this shard, in read order
    max_ts: int | None        # the largest ts read from that partition so far
    caught_up: bool           # the partition had no more records when the batch was read


class Shard:
    def __init__(self, thresholds: Thresholds, partitions: list[str]):
        self.thresholds = thresholds
        self.watermark = Watermark(partitions, thresholds.lateness_ms)
        self.no_movement = NoMovementDetector(thresholds)
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (topic, outcome) -> count

    def resume(self, partitions: list[str]) -> None:
        """After a restart every partition must report again before it stops holding the
        watermark: "caught up" from before the restart says nothing about what was
        written since. Partitions added since the snapshot are expected too."""
        self.watermark.forget_progress(partitions)

    def apply(self, item: ShardInput) -> list[Detection]:
        out: list[Detection] = []
        on_scan = self.no_movement.on_scan
        scans = duplicates = disputes = 0
        for event in item.events:
            if type(event) is Scan:
                scans += 1
                if on_scan(event, out) == "duplicate":
                    duplicates += 1
            elif type(event) is Dispute:
                disputes += 1
        outcomes = self.outcomes
        outcomes["scans", "accepted"] += scans - duplicates
        outcomes["scans", "duplicate"] += duplicates
        outcomes["disputes", "accepted"] += disputes
        watermark = self.watermark.observe(item.partition, item.max_ts, item.caught_up)
        if watermark is not None:
            self.no_movement.on_watermark(watermark, out)
            if self.watermark.all_caught_up:
                self.no_movement.flush_resolved(out)
        return out

    def advance_idle(self, wall_ms: int) -> list[Detection]:
        """Called on a wall-clock cadence: with every input idle, event time follows it."""
        out: list[Detection] = []
        watermark = self.watermark.advance_idle(wall_ms)
        if watermark is not None:
            self.no_movement.on_watermark(watermark, out)
        return out

    def drain_outcomes(self) -> Counter[tuple[str, str]]:
        outcomes, self.outcomes = self.outcomes, Counter()
        return outcomes

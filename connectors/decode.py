"""Decode and validate input records, and route them to shards with their partition's progress.

Each record is decoded with msgspec against the contract's schema. A record that fails goes to
the dead-letter topic with the reason; nothing is dropped and nothing raises. Valid scans and
disputes are grouped by shard; each group travels with the partition's progress (largest `ts`
read, caught up or not) so a shard never sees a watermark before the events behind it.
Weather warnings go straight to the global step, which uses them to name delay causes.
"""

from __future__ import annotations

import time

import msgspec

from connectors.records import OutputRecord, RawBatch
from models.events import Dispute, Scan, WeatherWarning, undecodable_reason
from models.privacy import mask_personal_data, mask_phones
from models.shard import ShardInput, shard_of

VALUE_LIMIT = 4096
CLOCK_TOPICS = ("scans", "disputes")  # weather records do not move event time
SCHEMAS = {"scans": Scan, "disputes": Dispute, "weather": WeatherWarning}
AGGREGATE_KEY = "aggregate"  # the one key of the global step


class DeadLetter(msgspec.Struct, kw_only=True):
    source_topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None
    error: str
    ts: int


def shard_key(shard: int) -> str:
    return f"shard-{shard:04d}"


class _Progress:
    __slots__ = ("caught_up", "max_ts", "sent_max_ts")

    def __init__(self) -> None:
        self.max_ts: int | None = None
        self.sent_max_ts: int | None = None
        self.caught_up: bool | None = None


class BatchRouter:
    """Turns a `RawBatch` into shard inputs and dead letters (one instance per worker)."""

    def __init__(self, shards: int, topic_names: dict[str, str], progress_tick_ms: int,
                 counts=None):
        self.shards = shards
        self.topic_names = topic_names  # contract name -> real topic name (for dead letters)
        self.progress_tick_ms = progress_tick_ms
        self.decoders = {name: msgspec.json.Decoder(schema) for name, schema in SCHEMAS.items()}
        self.progress: dict[str, _Progress] = {}
        self.counts = counts  # callable(topic, outcome, n) for metrics, or None

    def route(self, batch: RawBatch) -> list[tuple[str, object]]:
        decode = self.decoders[batch.topic].decode
        events: list = []
        dead: list[tuple[str, object]] = []
        for offset, key, value in batch.records:
            if value is None:
                dead.append(("dead-letter", self.dead_letter(batch, offset, key, value,
                                                             "the record has no value")))
                continue
            try:
                events.append(decode(value))
            except Exception as exc:  # any failure to decode is the record's: dead-letter it
                dead.append(("dead-letter", self.dead_letter(batch, offset, key, value,
                                                             undecodable_reason(exc))))
        if self.counts is not None:
            self.counts(batch.topic, "rejected", len(dead))
            if batch.topic not in CLOCK_TOPICS:
                self.counts(batch.topic, "accepted", len(events))
        if batch.topic not in CLOCK_TOPICS:  # weather warnings: for the global step only
            return [(AGGREGATE_KEY, event) for event in events] + dead
        return self._to_shards(batch, events) + dead

    def _to_shards(self, batch: RawBatch, events: list) -> list[tuple[str, object]]:
        progress = self.progress.get(batch.partition_id)
        if progress is None:
            progress = self.progress[batch.partition_id] = _Progress()
        if events:
            batch_max = max(event.ts for event in events)
            if progress.max_ts is None or batch_max > progress.max_ts:
                progress.max_ts = batch_max
        groups: dict[int, list] = {}
        shards = self.shards
        for event in events:
            shard = shard_of(event.waybill, shards)
            group = groups.get(shard)
            if group is None:
                groups[shard] = [event]
            else:
                group.append(event)
        everyone = (
            progress.caught_up is not batch.caught_up
            or (progress.max_ts is not None and (
                progress.sent_max_ts is None
                or progress.max_ts - progress.sent_max_ts >= self.progress_tick_ms))
        )
        if everyone:
            progress.caught_up = batch.caught_up
            progress.sent_max_ts = progress.max_ts
            targets = range(shards)
        else:
            targets = groups.keys()
        pid, max_ts, caught_up = batch.partition_id, progress.max_ts, batch.caught_up
        return [(shard_key(shard),
                 ShardInput(pid, groups.get(shard, []), max_ts, caught_up, shard))
                for shard in targets]

    def dead_letter(self, batch: RawBatch, offset: int, key: bytes | None,
                    value: bytes | None, reason: str) -> OutputRecord:
        # Mask before cutting, so a number across the cut cannot leave its digits behind.
        # Disputes carry buyers' notes: drop addresses too, not only phone numbers.
        mask = mask_personal_data if batch.topic == "disputes" else mask_phones
        text = None if value is None else mask(
            value.decode("utf-8", errors="replace")).encode()[:VALUE_LIMIT].decode(
                "utf-8", errors="ignore")
        record = DeadLetter(
            source_topic=self.topic_names.get(batch.topic, batch.topic),
            partition=batch.partition,
            offset=offset,
            key=None if key is None else mask_phones(key.decode("utf-8", errors="replace")),
            value=text,
            error=mask_phones(reason),
            ts=int(time.time() * 1000),
        )
        return OutputRecord("dead-letter", record.key, msgspec.json.encode(record))

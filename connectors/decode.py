"""Route input records to shards as bytes, and decode them where their state is.

The router reads only each scan's and claim's head (its required fields, one msgspec call that
skips the optional ones) to pick the shard (by `waybill`) and the partition's progress (by
`ts`): a record missing a required field never moves event time; the record's bytes travel
on, grouped by shard, with that progress (largest `ts` read, caught up or not), so a shard
never sees a watermark before the events behind it and nothing but bytes and plain tuples
crosses between workers. The shard decodes the records in full against the contract's schema
(`ShardDecoder`). The Kafka key is not trusted for routing: a producer's choice of key can
never split a parcel's state. A record that fails either decode goes to the dead-letter
topic with the reason; nothing is dropped and nothing raises. Weather warnings are decoded
here and go to the global step, which uses them to name delay causes.
"""

from __future__ import annotations

import time

import msgspec

from connectors.records import OutputRecord, RawBatch
from models.events import (
    Carrier,
    Dispute,
    DisputeKind,
    EpochMs,
    EventId,
    MerchantAction,
    Scan,
    ScanType,
    Shipment,
    Waybill,
    WeatherWarning,
    undecodable_reason,
)
from models.privacy import mask_personal_data
from models.shard import ShardInput, shard_of

VALUE_LIMIT = 4096
MASK_MARGIN = 256  # bytes past the cut still read when masking
# Weather records do not move event time; every other input does.
CLOCK_TOPICS = ("scans", "disputes", "shipments", "merchant-actions")
SCHEMAS = {"scans": Scan, "disputes": Dispute, "weather": WeatherWarning, "shipments": Shipment,
           "merchant-actions": MerchantAction}


class ScanHead(msgspec.Struct, frozen=True, gc=False):
    """A scan's required fields: routing needs its waybill and ts, and a record missing any
    required field must not move event time; the optional ones are skipped, not built."""

    event_id: EventId
    waybill: Waybill
    carrier: Carrier
    scan_type: ScanType
    ts: EpochMs


class DisputeHead(msgspec.Struct, frozen=True, gc=False):
    """A claim's required fields (see `ScanHead`)."""

    event_id: EventId
    waybill: Waybill
    ts: EpochMs
    kind: DisputeKind


class ShipmentHead(msgspec.Struct, frozen=True, gc=False):
    """A shipment's routing fields (see `ScanHead`; the full decode checks the rest)."""

    event_id: EventId
    waybill: Waybill
    ts: EpochMs


class ActionHead(msgspec.Struct, frozen=True, gc=False):
    """A merchant action's routing fields: it goes to the shard of the waybill it names,
    else of its merchant (any shard will do: the global step judges it)."""

    event_id: EventId
    merchant_id: str
    ts: EpochMs
    waybill: Waybill | None = None


HEADS = {"scans": ScanHead, "disputes": DisputeHead, "shipments": ShipmentHead,
         "merchant-actions": ActionHead}


class DeadLetter(msgspec.Struct, kw_only=True):
    source_topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None
    error: str
    ts: int


class _Progress:
    __slots__ = ("caught_up", "max_ts", "sent_max_ts")

    def __init__(self) -> None:
        self.max_ts: int | None = None
        self.sent_max_ts: int | None = None
        self.caught_up: bool | None = None


class BatchRouter:
    """Turns a `RawBatch` into shard inputs (raw records), weather warnings and dead letters
    (one instance per worker)."""

    def __init__(self, shards: int, topic_names: dict[str, str], progress_tick_ms: int,
                 counts=None):
        self.shards = shards
        self.letters = DeadLetters(topic_names)
        self.progress_tick_ms = progress_tick_ms
        self.heads = {name: msgspec.json.Decoder(head) for name, head in HEADS.items()}
        self.weather = msgspec.json.Decoder(WeatherWarning)
        self.progress: dict[str, _Progress] = {}
        self.counts = counts  # callable(topic, outcome, n) for metrics, or None

    def route(self, batch: RawBatch) -> list:
        if batch.topic not in CLOCK_TOPICS:  # weather warnings: for the global step only
            return self._weather(batch)
        head = self.heads[batch.topic].decode
        groups: dict[int, list] = {}
        dead: list[OutputRecord] = []
        shards = self.shards
        max_ts = None
        for record in batch.records:
            try:
                found = head(record[2])
            except Exception:  # any failure to decode is the record's: dead-letter it
                dead.append(self.letters.make(batch.topic, batch.partition, record,
                                              self._reason(batch.topic, record[2])))
                continue
            # Every other head's waybill is required, so only an action's may be missing.
            waybill, ts = found.waybill or found.merchant_id, found.ts
            if max_ts is None or ts > max_ts:
                max_ts = ts
            shard = shard_of(waybill, shards)
            group = groups.get(shard)
            if group is None:
                groups[shard] = [record]
            else:
                group.append(record)
        if self.counts is not None:
            self.counts(batch.topic, "rejected", len(dead))
        return self._to_shards(batch, groups, max_ts) + dead

    @staticmethod
    def _reason(topic: str, value: bytes | None) -> str:
        """The full schema's reason, the one a person can act on (the head's would name only
        the fields it reads)."""
        try:
            FULL_DECODERS[topic].decode(value)
        except Exception as exc:
            return reason_for(value, exc)
        return "the record could not be decoded"

    def _weather(self, batch: RawBatch) -> list:
        warnings, dead = decode_records(self.weather.decode, batch.topic, batch.partition,
                                        batch.records, self.letters)
        if self.counts is not None:
            self.counts(batch.topic, "rejected", len(dead))
            self.counts(batch.topic, "accepted", len(warnings))
        return warnings + dead

    def _to_shards(self, batch: RawBatch, groups: dict[int, list], batch_max: int | None,
                   ) -> list[ShardInput]:
        progress = self.progress.get(batch.partition_id)
        if progress is None:
            progress = self.progress[batch.partition_id] = _Progress()
        if batch_max is not None and (progress.max_ts is None or batch_max > progress.max_ts):
            progress.max_ts = batch_max
        everyone = (
            progress.caught_up is not batch.caught_up
            or (progress.max_ts is not None and (
                progress.sent_max_ts is None
                or progress.max_ts - progress.sent_max_ts >= self.progress_tick_ms))
        )
        if everyone:
            progress.caught_up = batch.caught_up
            progress.sent_max_ts = progress.max_ts
            targets = range(self.shards)
        else:
            targets = groups.keys()
        pid, max_ts, caught_up = batch.partition_id, progress.max_ts, batch.caught_up
        return [ShardInput(pid, groups.get(shard, []), max_ts, caught_up, shard)
                for shard in targets]


class ShardDecoder:
    """The full decode of a shard's raw records, in the shard's worker."""

    def __init__(self, topic_names: dict[str, str]):
        self.letters = DeadLetters(topic_names)

    def decode(self, item: ShardInput) -> tuple[ShardInput, list[OutputRecord]]:
        """The item with its records decoded, and a dead letter for each that fails."""
        topic, partition = item.partition.rsplit("/", 1)
        events, dead = decode_records(FULL_DECODERS[topic].decode, topic, int(partition),
                                      item.events, self.letters)
        return item._replace(events=events), dead


def decode_records(decode, topic: str, partition: int, records: list,
                   letters: DeadLetters) -> tuple[list, list[OutputRecord]]:
    """Each (offset, key, value) decoded, and a dead letter for each that fails."""
    decoded: list = []
    dead: list[OutputRecord] = []
    for record in records:
        try:
            decoded.append(decode(record[2]))
        except Exception as exc:  # any failure to decode is the record's
            dead.append(letters.make(topic, partition, record, reason_for(record[2], exc)))
    return decoded, dead


FULL_DECODERS = {name: msgspec.json.Decoder(schema) for name, schema in SCHEMAS.items()}


def reason_for(value: bytes | None, exc: Exception) -> str:
    return "the record has no value" if value is None else undecodable_reason(exc)


class DeadLetters:
    """Dead-letter records, with personal data masked."""

    def __init__(self, topic_names: dict[str, str]):
        self.topic_names = topic_names  # contract name -> real topic name

    def make(self, topic: str, partition: int, record: tuple[int, bytes | None, bytes | None],
             reason: str) -> OutputRecord:
        offset, key, value = record
        # Mask before cutting, so a number across the cut cannot leave its digits behind.
        # A record that failed to decode may hold anything: phones and addresses are masked
        # in every field, whatever its topic. Only what can be shown is masked (a huge record
        # costs no more than a small one); the margin keeps a number across the cut whole.
        text = None if value is None else mask_personal_data(
            value[:VALUE_LIMIT + MASK_MARGIN].decode("utf-8", errors="replace")
        ).encode()[:VALUE_LIMIT].decode("utf-8", errors="ignore")
        letter = DeadLetter(
            source_topic=self.topic_names.get(topic, topic),
            partition=partition,
            offset=offset,
            key=None if key is None else mask_personal_data(
                key[:VALUE_LIMIT].decode("utf-8", errors="replace")),
            value=text,
            error=mask_personal_data(reason),
            ts=int(time.time() * 1000),
        )
        return OutputRecord("dead-letter", letter.key, msgspec.json.encode(letter),
                            f"{letter.source_topic}/{partition}/{offset}", letter.ts)
